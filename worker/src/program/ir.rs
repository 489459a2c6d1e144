//! The circuit IR: what the compiler emits and the executor runs.
//!
//! The IR is a list of vector-valued nodes in topological order (every
//! operand precedes its user). It is deliberately *type-agnostic*: every
//! value is a vector (or scalar) of elements of the ring Z_2^64, and the
//! compiler has already inserted the scaling and truncation that the
//! source-level `int`/`fixed` types require. Types survive only where
//! values cross the boundary of the computation: inputs are encoded with
//! their [`ElemType`] and outputs decoded with theirs.
//!
//! Whether a node is public or secret is derived, not declared: inputs are
//! secret, constants and lengths are public, and every other node is public
//! exactly when all its operands are. Only two operations ever need
//! communication, and only when an operand is secret:
//! [`Op::Mul`] with both operands secret (a Beaver multiplication) and
//! [`Op::DivPublic`] with a secret dividend (a probabilistic division by a
//! public divisor, which is also how fixed-point truncation is expressed).
//! The executor groups those by multiplicative depth into layers, one
//! communication round per layer.

use std::fmt;

/// Index of a node in [`Circuit::nodes`].
pub type ValueId = usize;

/// Index of a party in [`Circuit::parties`] (the job's party list, in order).
pub type PartyIndex = usize;

/// A position in the program source, for errors that can only be detected
/// once input lengths are known (e.g. elementwise operands of different
/// lengths). 1-based line and column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Span {
    pub line: u32,
    pub column: u32,
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// The element type of an input or output, used only to encode inputs into
/// the ring and decode outputs from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ElemType {
    /// A 64-bit two's-complement integer.
    Int,
    /// A fixed-point number with [`Circuit::frac_bits`] fractional bits.
    Fixed,
    /// A bit, `false` or `true`; in plaintext (inputs, outputs, `plain`)
    /// the ring element 0 or 1. Secret bools are XOR-shared over GF(2).
    Bool,
}

/// Whether an input is one value or a vector of values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InputShape {
    Scalar,
    /// A vector whose (public) length the owner declares at run time.
    Vector,
}

/// Who provides an input.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Owners {
    /// Exactly one party owns the input.
    Party(PartyIndex),
    /// Every party contributes its own value (`from each`): a per-party list.
    Each,
}

impl Owners {
    /// Whether `party` provides (its own part of) the input.
    pub fn includes(&self, party: PartyIndex) -> bool {
        match self {
            Owners::Party(p) => *p == party,
            Owners::Each => true,
        }
    }
}

/// A declared input.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct InputDecl {
    /// Source name; the key under which parties provide data.
    pub name: String,
    pub elem: ElemType,
    pub shape: InputShape,
    pub owners: Owners,
    pub span: Span,
}

impl InputDecl {
    /// Whether `party` provides a value for this input.
    pub fn is_owned_by(&self, party: PartyIndex) -> bool {
        match self.owners {
            Owners::Party(p) => p == party,
            Owners::Each => true,
        }
    }
}

/// One operation. Operands are earlier nodes. Elementwise binary operations
/// broadcast a scalar operand over a vector operand; two vector operands must
/// have the same length (checked by the executor once lengths are known).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// Party `party`'s value of input `input` (index into
    /// [`Circuit::inputs`]). Secret. For an `Owners::Party(p)` input, `party`
    /// is `p`; for `Owners::Each` there is one `Input` node per party.
    Input { input: usize, party: PartyIndex },
    /// A public scalar, already encoded in the ring (fixed-point constants
    /// are scaled by the compiler).
    Const(u64),
    /// The public length of a vector, as a scalar integer.
    Len(ValueId),
    /// Elementwise addition.
    Add(ValueId, ValueId),
    /// Elementwise subtraction.
    Sub(ValueId, ValueId),
    /// Elementwise negation.
    Neg(ValueId),
    /// Elementwise ring product (no truncation). Local when at least one
    /// operand is public; a Beaver multiplication when both are secret.
    Mul(ValueId, ValueId),
    /// Elementwise signed division of the first operand by the second, a
    /// public positive scalar, rounding toward negative infinity. Exact
    /// when the dividend is public; when it is secret the result may be
    /// one greater or one less than the exact floor (see
    /// `protocol::additive::division`). A divisor that is not positive at run time
    /// is an error reported at this node's span.
    DivPublic(ValueId, ValueId),
    /// The sum of a vector's elements (a scalar). Local.
    Sum(ValueId),
    /// The concatenation of vectors and scalars, in order, all ring
    /// values or all bools. Local.
    Concat(Vec<ValueId>),

    // The comparison family. Ring operands are compared as signed 64-bit
    // integers; results are bools.
    /// Elementwise `[a < b]`: the sign bit of `a - b` (mod 2^64), which is
    /// the signed order whenever the difference lies in `(-2^63, 2^63)` —
    /// always, for operands within the documented range `|v| < 2^62`.
    Less(ValueId, ValueId),
    /// Elementwise `[a == b]` of ring elements.
    Equal(ValueId, ValueId),
    /// A public bool.
    Bool(bool),
    /// Elementwise negation of a bool.
    Not(ValueId),
    /// Elementwise conjunction of bools.
    And(ValueId, ValueId),
    /// Elementwise disjunction of bools.
    Or(ValueId, ValueId),
    /// Elementwise exclusive or of bools.
    Xor(ValueId, ValueId),
    /// Elementwise `c ? a : b`: `c` a bool, `a` and `b` ring values.
    Select(ValueId, ValueId, ValueId),
    /// A bool as the ring element 0 or 1.
    ToRing(ValueId),
    /// The smallest element of a non-empty ring vector (signed order), a
    /// scalar.
    Min(ValueId),
    /// The largest element of a non-empty ring vector, a scalar.
    Max(ValueId),
    /// The index (from 0) of the first smallest element of a non-empty
    /// ring vector, a scalar ring integer (not scaled).
    ArgMin(ValueId),
    /// The index of the first largest element.
    ArgMax(ValueId),

    // Order statistics, joins and fixed-point functions.
    /// `value` reordered by the signed order of `key` (two ring vectors of
    /// one length): ascending, or descending when `descending`; stable
    /// (elements with equal keys keep their order).
    SortBy { key: ValueId, value: ValueId, descending: bool },
    /// The rank of every element of `v` (a ring vector): `rank[i]` is the
    /// position (from 0) of element `i` in the stable ascending (or
    /// `descending`) order of `v` by signed value, the order [`Op::SortBy`]
    /// uses: equal elements keep their index order. A ring integer vector
    /// (not scaled) of `v`'s length.
    Rank { v: ValueId, descending: bool },
    /// Elements `start, …, start + count - 1` of a vector; `start` and
    /// `count` are public scalar integers (checked at run time against the
    /// vector's length).
    Slice { v: ValueId, start: ValueId, count: ValueId },
    /// The `q`-quantile of a non-empty fixed-point vector, given sorted
    /// ascending (the compiler passes `SortBy(v, v)`, so that quantiles of
    /// one vector share its sort; `plain` sorts it again), with linear
    /// interpolation between the closest ranks, as numpy's default: with
    /// `s` sorted, `h = (n - 1)·q`, the result is
    /// `s[⌊h⌋] + ⌊(h - ⌊h⌋)·(s[⌊h⌋ + 1] - s[⌊h⌋])⌋`. `q` is public, in units
    /// of 2^-[`QUANTILE_BITS`] (`0 <= q <= 2^QUANTILE_BITS`), whatever the
    /// program's `fixed_point`, so `h` is exact.
    Quantile { v: ValueId, q: u64 },
    /// The number of distinct keys present in both ring vectors (an inner
    /// join's matched keys; duplicates within a side do not count twice).
    JoinCount(ValueId, ValueId),
    /// The sum of `values` (third operand, aligned with the second) over
    /// the rows of the second table whose key appears in the first (a
    /// semi-join: duplicates in the first do not multiply rows).
    JoinSum(ValueId, ValueId, ValueId),
    /// Elementwise `a / b` of two fixed-point values with a secret divisor
    /// (see `docs/language.md` for the error bound); `b = 0` gives 0.
    DivSecret(ValueId, ValueId),
    /// An elementwise function of a fixed-point value.
    Func(Func, ValueId),

    /// Over a vector sorted by key: 1 where a run of equal keys ends (the
    /// next key differs, or the last element), else 0. Ring values.
    RunEnds(ValueId),
    /// Over `keys` sorted (first operand) and `values` aligned with them:
    /// at each element, the sum of `values` from the start of its run of
    /// equal keys up to it (so the run's total at its end); with no
    /// values, the count of elements so far in the run.
    RunTotals { keys: ValueId, values: Option<ValueId> },

    // Range checks (`range_check`, see `docs/language.md`).
    /// Elementwise: whether a ring value lies in `[-2^62, 2^62)` (signed).
    InRange(ValueId),
    /// Elementwise: whether the product of the operands fits the range.
    /// With a public operand, exactly `|a·b| < 2^62`; with two secrets,
    /// the bit-length rule `bits(a) + bits(b) <= 61`, where `bits(v)` is
    /// the number of significant bits of `v` (of `-v - 1` for a negative
    /// `v`), which accepts every product below 2^60 and refuses every one
    /// of 2^62 or more.
    ProductFits(ValueId, ValueId),
}

/// The precision of a quantile's `q` ([`Op::Quantile`]): fractional bits,
/// independent of the program's fixed point (a median at `fixed_point 0`
/// is still the middle).
pub const QUANTILE_BITS: u32 = 16;

/// The fixed-point functions of [`Op::Func`]. Their results are fixed-point
/// approximations with the error bounds `docs/language.md` documents over
/// each function's domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Func {
    /// `√x`; 0 for `x <= 0`.
    Sqrt,
    /// `e^x`; saturates at the largest fixed-point value.
    Exp,
    /// `ln x`; 0 for `x <= 0`.
    Log,
    /// `1 / (1 + e^-x)`.
    Sigmoid,
}

impl Func {
    /// The function's name in the language.
    pub fn name(self) -> &'static str {
        match self {
            Func::Sqrt => "sqrt",
            Func::Exp => "exp",
            Func::Log => "log",
            Func::Sigmoid => "sigmoid",
        }
    }
}

impl Op {
    /// The operands of this operation, in order.
    pub fn operands(&self) -> Vec<ValueId> {
        match self {
            Op::Input { .. } | Op::Const(_) | Op::Bool(_) => Vec::new(),
            Op::Len(a)
            | Op::Neg(a)
            | Op::Sum(a)
            | Op::Not(a)
            | Op::ToRing(a)
            | Op::Min(a)
            | Op::Max(a)
            | Op::ArgMin(a)
            | Op::ArgMax(a)
            | Op::Quantile { v: a, .. }
            | Op::Rank { v: a, .. }
            | Op::Func(_, a)
            | Op::InRange(a)
            | Op::RunEnds(a)
            | Op::RunTotals { keys: a, values: None } => vec![*a],
            Op::RunTotals { keys, values: Some(v) } => vec![*keys, *v],
            Op::SortBy { key, value, .. } => vec![*key, *value],
            Op::Slice { v, start, count } => vec![*v, *start, *count],
            Op::JoinCount(a, b) | Op::DivSecret(a, b) | Op::ProductFits(a, b) => vec![*a, *b],
            Op::JoinSum(a, b, c) => vec![*a, *b, *c],
            Op::Add(a, b)
            | Op::Sub(a, b)
            | Op::Mul(a, b)
            | Op::DivPublic(a, b)
            | Op::Less(a, b)
            | Op::Equal(a, b)
            | Op::And(a, b)
            | Op::Or(a, b)
            | Op::Xor(a, b) => vec![*a, *b],
            Op::Select(c, a, b) => vec![*c, *a, *b],
            Op::Concat(parts) => parts.clone(),
        }
    }
}

impl Op {
    /// Whether the operation yields a bool (otherwise a ring value). A
    /// `Concat` or an `Input` yields what its parts or declaration are:
    /// see [`Circuit::is_bool`].
    pub fn yields_bool(&self) -> bool {
        matches!(
            self,
            Op::Less(..)
                | Op::Equal(..)
                | Op::Bool(_)
                | Op::Not(_)
                | Op::And(..)
                | Op::Or(..)
                | Op::Xor(..)
                | Op::InRange(_)
                | Op::ProductFits(..)
        )
    }
}

/// A node: an operation and where in the source it comes from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Node {
    pub op: Op,
    pub span: Span,
}

/// A declared output.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OutputDecl {
    pub name: String,
    pub value: ValueId,
    pub elem: ElemType,
    /// Parties that learn this output, in ascending order, no duplicates.
    pub recipients: Vec<PartyIndex>,
    pub span: Span,
}

/// A range check (`range_check`): a bool scalar, true when every element
/// of the checked operation stayed in range, revealed to every party
/// before any output; a false one fails the job at `span`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CheckDecl {
    pub value: ValueId,
    pub span: Span,
}

/// A compiled program, ready to be instantiated with input lengths and run.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Circuit {
    /// Fractional bits of the fixed-point encoding (default 16).
    pub frac_bits: u32,
    /// The job's parties, in order; [`PartyIndex`] indexes this list.
    pub parties: Vec<String>,
    pub inputs: Vec<InputDecl>,
    pub nodes: Vec<Node>,
    pub outputs: Vec<OutputDecl>,
    /// The range checks, in program order (empty without `range_check`).
    pub checks: Vec<CheckDecl>,
}

impl Circuit {
    /// Per node: whether its value is a bool (otherwise a ring value).
    pub fn bool_nodes(&self) -> Vec<bool> {
        let mut out: Vec<bool> = Vec::with_capacity(self.nodes.len());
        for node in &self.nodes {
            let b = match &node.op {
                Op::Input { input, .. } => self.inputs.get(*input).is_some_and(|i| i.elem == ElemType::Bool),
                Op::Concat(parts) => parts.first().is_some_and(|p| out.get(*p).copied().unwrap_or(false)),
                op => op.yields_bool(),
            };
            out.push(b);
        }
        out
    }
}
