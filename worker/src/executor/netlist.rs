//! The gate-level form of a circuit instance: what the executor runs.
//!
//! [`crate::program::ir`] is the program's semantic graph: vector-valued,
//! with high-level operations (comparisons, selections, reductions) over
//! vectors whose lengths are unknown until the parties declare them. Once
//! they have, [`Netlist::lower`] expands it into [`Gate`]s over the
//! primitives a protocol provides:
//!
//! - ring gates over Z_2^64 (linear operations, multiplication, division
//!   by a public value);
//! - bit-sliced binary gates over GF(2) ([`crate::gf2::Bits`] bundles: XOR,
//!   NOT and plane shuffles are local, AND is the interactive gate);
//! - the two conversions: a **masked opening** of a ring value with an
//!   edaBit (`c = x + r` is opened, and the bits of `r` are a secret
//!   bundle, so `x = c - r` continues in binary: arithmetic to binary), and
//!   a **bit injection** `b·x` with a daBit (binary to arithmetic).
//!
//! The comparison circuits are not written here but in
//! [`crate::circuits`], generic over [`BinaryOps`]: the lowering is one
//! more evaluator of them, which records gates instead of computing bits.
//! So the same circuit code is the plaintext reference, the cost model and
//! the protocol's schedule.
//!
//! A gate is *public* when every party knows its value (constants and
//! lengths at plan time; opened values and what is computed from public
//! values only at run time) and *secret* otherwise. A gate is
//! *interactive* when it needs a round: a ring product or an AND of two
//! secrets, a division or a masked opening of a secret, a bit injection of
//! a secret bit. Its depth is one more than its deepest operand's (two for
//! a division that takes a correction round); every other gate's is its
//! deepest operand's. The executor runs every interactive gate of one
//! depth in one round, whatever mix of kinds they are.

use super::plan::{Lowering, PlanError};
use crate::circuits::{self, BinaryOps};
use crate::gf2::Bits;
use crate::program::ir::{ElemType, PartyIndex, Span};
use crate::protocol::additive::division::Division;

/// Index of a gate in [`Netlist::gates`].
pub type GateId = usize;

/// What a gate's value is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Ring elements of Z_2^64.
    Ring,
    /// A bundle of this many bit-planes.
    Bits(usize),
}

/// A value every party knows when the instance is planned.
#[derive(Clone, Debug)]
pub enum PublicValue {
    Ring(Vec<u64>),
    Bits(Bits),
}

/// One gate. Operands are earlier gates; elementwise gates broadcast a
/// scalar operand over a vector one.
#[derive(Clone, Debug)]
pub enum GateOp {
    /// A value known at plan time.
    Public(PublicValue),
    /// Party `party`'s value of input `input` (ring, or one plane for a
    /// bool input).
    Input {
        input: usize,
        party: PartyIndex,
    },
    Add(GateId, GateId),
    Sub(GateId, GateId),
    Neg(GateId),
    /// Ring product: a Beaver multiplication when both are secret.
    Mul(GateId, GateId),
    /// Signed division by a public divisor (probabilistic when secret).
    Div(GateId, Division),
    /// The sum of a vector's elements.
    Sum(GateId),
    /// Concatenation of elements (all ring, or all bundles of one width).
    Concat(Vec<GateId>),
    /// Elements `start, start + step, …` (`count` of them) of a ring vector.
    Strided {
        a: GateId,
        start: usize,
        step: usize,
        count: usize,
    },
    /// Open `x + r` for a fresh edaBit `r`: a public ring value.
    MaskedOpen(GateId),
    /// The bits of the edaBit consumed by the masked opening `open`: a
    /// secret 64-plane bundle.
    MaskBits(GateId),
    /// The 64 bits of a public ring value, as planes.
    Decompose(GateId),
    Xor(GateId, GateId),
    /// Plane-by-plane AND: a bit-triple multiplication when both are secret.
    And(GateId, GateId),
    Not(GateId),
    /// The planes at the indices, in order.
    Planes(GateId, Vec<usize>),
    /// The planes of every part, in order (same elements).
    Stack(Vec<GateId>),
    /// `b·x`: `b` a one-plane bundle, `x` a ring value. With a secret `b`,
    /// a bit injection with a daBit (and a Beaver triple when `x` is
    /// secret too).
    Inject(GateId, GateId),
    /// Replicated sharing's arithmetic to binary, local half: the bits of
    /// the component of `x` that two parties hold, as a secret 64-plane
    /// bundle `u` (`x = u - v`, see [`GateOp::SplitInput`]).
    SplitLocal(GateId),
    /// Replicated sharing's arithmetic to binary, interactive half: the
    /// bits of `v = -(the other two components of x)`, which one party
    /// holds and inputs (one round).
    SplitInput(GateId),
    /// Element `indices[k]` of a ring vector at position `k`: a public
    /// wiring (a sort's gather of elements and pivots, its final order).
    Gather {
        a: GateId,
        indices: std::sync::Arc<[u32]>,
    },
    /// The elements `x` of a ring vector with bit `stride` of `x` clear
    /// (`upper`: `x + stride` for each such `x`), in order: one side of
    /// every switch of a butterfly stage of a Beneš network
    /// ([`super::shuffle`]).
    Pairs {
        a: GateId,
        stride: usize,
        upper: bool,
    },
    /// The inverse of the two [`GateOp::Pairs`]: `lo` and `hi` back at
    /// their positions `x` and `x + stride`.
    Unpair {
        lo: GateId,
        hi: GateId,
        stride: usize,
    },
    /// A value a dynamic step's driver provides (public or secret): entry
    /// `index` of what it passes in ([`super::sort`]).
    External {
        index: usize,
        secret: bool,
    },
    /// The columns, each reordered by the signed order of `key`, stable
    /// (ascending, or descending), concatenated: a dynamic step run by
    /// [`super::sort`] between the layers (a shuffle, then quicksort with
    /// opened comparisons). Interactive when any operand is secret.
    /// With `ranks`, one more vector follows the columns: each element's
    /// position in that order (`Op::Rank`).
    Sort {
        key: GateId,
        columns: Vec<GateId>,
        descending: bool,
        ranks: bool,
    },
}

impl GateOp {
    pub fn operands(&self) -> Vec<GateId> {
        match self {
            GateOp::Public(_) | GateOp::Input { .. } | GateOp::External { .. } => Vec::new(),
            GateOp::Neg(a)
            | GateOp::Div(a, _)
            | GateOp::Sum(a)
            | GateOp::Strided { a, .. }
            | GateOp::MaskedOpen(a)
            | GateOp::MaskBits(a)
            | GateOp::Decompose(a)
            | GateOp::Not(a)
            | GateOp::Planes(a, _)
            | GateOp::SplitLocal(a)
            | GateOp::SplitInput(a)
            | GateOp::Gather { a, .. }
            | GateOp::Pairs { a, .. } => vec![*a],
            GateOp::Add(a, b)
            | GateOp::Sub(a, b)
            | GateOp::Mul(a, b)
            | GateOp::Xor(a, b)
            | GateOp::And(a, b)
            | GateOp::Inject(a, b)
            | GateOp::Unpair { lo: a, hi: b, .. } => vec![*a, *b],
            GateOp::Concat(parts) | GateOp::Stack(parts) => parts.clone(),
            GateOp::Sort { key, columns, .. } => std::iter::once(*key).chain(columns.iter().copied()).collect(),
        }
    }
}

/// A gate with its public shape.
#[derive(Clone, Debug)]
pub struct Gate {
    pub op: GateOp,
    /// The source position of the program operation it implements.
    pub span: Span,
    /// `None` for a scalar, `Some(n)` for a vector of `n` elements.
    pub len: Option<usize>,
    pub kind: Kind,
    pub secret: bool,
    /// Its round: 0 for gates computable before any interaction.
    pub depth: usize,
    /// Whether it needs a round (see the module documentation).
    pub interactive: bool,
}

impl Gate {
    /// Elements (1 for a scalar).
    pub fn width(&self) -> usize {
        self.len.unwrap_or(1)
    }
}

/// The gates of an instance, in topological order.
#[derive(Clone, Debug, Default)]
pub struct Netlist {
    pub gates: Vec<Gate>,
    /// The protocol's choices the gates follow.
    pub lowering: Lowering,
    /// The number of parties of the job (a sort's shuffle has one pass
    /// per party).
    pub parties: usize,
}

/// Why a gate cannot be built: an internal inconsistency or a shape error,
/// reported at the span being lowered.
fn shape_error(span: Span, reason: String) -> PlanError {
    PlanError { span, reason }
}

impl Netlist {
    /// Append a gate, deriving its secrecy and depth from its operands.
    pub fn push(&mut self, op: GateOp, span: Span, len: Option<usize>, kind: Kind) -> GateId {
        let operands = op.operands();
        let secret_of = |g: &GateId| self.gates[*g].secret;
        let secret = match &op {
            GateOp::Public(_) | GateOp::MaskedOpen(_) => false,
            GateOp::Input { .. } | GateOp::MaskBits(_) | GateOp::SplitLocal(_) | GateOp::SplitInput(_) => true,
            GateOp::External { secret, .. } => *secret,
            _ => operands.iter().any(secret_of),
        };
        let interactive = match &op {
            GateOp::Mul(a, b) | GateOp::And(a, b) => secret_of(a) && secret_of(b),
            GateOp::Div(a, _) | GateOp::MaskedOpen(a) | GateOp::Inject(a, _) | GateOp::SplitInput(a) => secret_of(a),
            GateOp::Sort { .. } => operands.iter().any(secret_of),
            _ => false,
        };
        let below = operands.iter().map(|g| self.gates[*g].depth).max().unwrap_or(0);
        let rounds = match &op {
            GateOp::Div(_, division) if interactive => self.lowering.division_rounds(division),
            _ => usize::from(interactive),
        };
        self.gates.push(Gate { op, span, len, kind, secret, depth: below + rounds, interactive });
        self.gates.len() - 1
    }

    pub fn gate(&self, g: GateId) -> &Gate {
        &self.gates[g]
    }

    /// The shape of an elementwise result of `a` and `b`.
    pub fn elementwise(&self, a: GateId, b: GateId, span: Span, what: &str) -> Result<Option<usize>, PlanError> {
        match (self.gates[a].len, self.gates[b].len) {
            (Some(x), Some(y)) if x != y => {
                Err(shape_error(span, format!("{what} of vectors of different lengths ({x} and {y})")))
            }
            (Some(x), _) | (_, Some(x)) => Ok(Some(x)),
            (None, None) => Ok(None),
        }
    }

    /// A public ring scalar.
    pub fn constant(&mut self, value: u64, span: Span) -> GateId {
        self.push(GateOp::Public(PublicValue::Ring(vec![value])), span, None, Kind::Ring)
    }

    /// A binary elementwise ring gate (`Add`, `Sub`, `Mul`).
    pub fn ring2(&mut self, op: fn(GateId, GateId) -> GateOp, a: GateId, b: GateId, span: Span) -> GateId {
        let len = self.elementwise(a, b, span, "an operation").expect("operands of one shape");
        self.push(op(a, b), span, len, Kind::Ring)
    }

    /// `[x < 0]` for a ring value: the sign of `x`, through a masked
    /// opening (arithmetic to binary with an edaBit) and the borrow circuit
    /// of [`circuits::compare::msb_of_difference`]. For a secret `x`: one
    /// round for the opening, then the circuit's AND levels.
    pub fn sign(&mut self, x: GateId, span: Span) -> GateId {
        let (c, r) = self.in_binary(x, span);
        let mut ops = Recorder { net: self, span };
        circuits::compare::msb_of_difference(&mut ops, &c, &r)
    }

    /// `[x == 0]` for a ring value: `x + r` opened equals `r` exactly when
    /// `x` is 0, an AND tree over the agreeing bits.
    pub fn is_zero(&mut self, x: GateId, span: Span) -> GateId {
        let (c, r) = self.in_binary(x, span);
        let mut ops = Recorder { net: self, span };
        circuits::compare::equal(&mut ops, &c, &r)
    }

    /// `[(k, t) < (0, 0)]` lexicographically for a key difference `dk`
    /// and a tag difference `dt` with `|dt| < 2^(tag_bits - 1)`: `[dk < 0]
    /// ⊕ ([dk == 0] ∧ [dt < 0])`. The key's zero test costs almost nothing
    /// beyond its sign: the borrow circuit's carry tree carries the group
    /// propagate of every segment along (one AND more per level), and the
    /// propagate of all 63 low positions is `[c_low == r_low]`; the top
    /// position's agreement is `!(c_63 ⊕ r_63)`, already computed for the
    /// sign. Depth: the conversion, the carry tree, one AND.
    pub fn lexicographic_less(&mut self, dk: GateId, dt: GateId, tag_bits: usize, span: Span) -> GateId {
        let (c, r) = self.in_binary(dk, span);
        let tag_less = self.sign_small(dt, tag_bits, span);
        let mut ops = Recorder { net: self, span };
        let c_top = ops.gather(&c, &[63]);
        let r_top = ops.gather(&r, &[63]);
        let msb = ops.xor(&c_top, &r_top);
        let low: Vec<usize> = (0..63).collect();
        let c_low = ops.gather(&c, &low);
        let r_low = ops.gather(&r, &low);
        // c_low − r_low borrows when c_low + !r_low + 1 carries out of no
        // position (as `circuits::compare::less_than`).
        let not_r = ops.not(&r_low);
        let g = ops.and(&c_low, &not_r);
        let p = ops.xor(&c_low, &not_r);
        let g0 = {
            let g0 = ops.gather(&g, &[0]);
            let p0 = ops.gather(&p, &[0]);
            ops.xor(&g0, &p0)
        };
        let g_rest = ops.gather(&g, &(1..63).collect::<Vec<_>>());
        let g = ops.concat(&[&g0, &g_rest]);
        let (carry, low_equal) = carry_and_propagate(&mut ops, &g, &p);
        let borrow = ops.not(&carry);
        let key_less = ops.xor(&msb, &borrow);
        let top_equal = ops.not(&msb);
        let tie_low = ops.and(&top_equal, &tag_less);
        let tie = ops.and(&low_equal, &tie_low);
        ops.xor(&key_less, &tie)
    }

    /// `[x < 0]` for a ring value known to satisfy `|x| < 2^(bits - 1)`:
    /// bit `bits - 1` of `x`, i.e. the top bit of the `bits`-bit difference
    /// of the low planes of `(c, r)` (the low bits of a difference depend
    /// only on the low bits of its operands): a circuit of `bits` planes
    /// instead of 64.
    pub fn sign_small(&mut self, x: GateId, bits: usize, span: Span) -> GateId {
        let bits = bits.clamp(2, 64);
        let (c, r) = self.in_binary(x, span);
        let low: Vec<usize> = (0..bits).collect();
        let mut ops = Recorder { net: self, span };
        let (c, r) = (ops.gather(&c, &low), ops.gather(&r, &low));
        circuits::compare::msb_of_difference(&mut ops, &c, &r)
    }

    /// A ring value in binary as a pair of 64-plane bundles `(c, r)` with
    /// `x = c - r`, by the protocol's conversion: under additive sharing
    /// `c` is public (a masked opening) and `r` the secret bits of an
    /// edaBit; under replicated sharing both are secret ([`GateOp::SplitLocal`],
    /// [`GateOp::SplitInput`]) and the circuits' first level of ANDs is
    /// interactive. A public `x` needs neither: `(x, 0)`.
    pub(crate) fn in_binary(&mut self, x: GateId, span: Span) -> (GateId, GateId) {
        let len = self.gates[x].len;
        let bits = Kind::Bits(64);
        if !self.gates[x].secret {
            let c = self.push(GateOp::Decompose(x), span, len, bits);
            let zeros = Bits::zeros(64, self.gates[x].width());
            let r = self.push(GateOp::Public(PublicValue::Bits(zeros)), span, len, bits);
            return (c, r);
        }
        if !self.lowering.protocol.uses_preprocessing() {
            // Replicated sharing: x = x_0 + (x_1 + x_2), with x_0 held by
            // two parties and x_1 + x_2 by the third.
            let u = self.push(GateOp::SplitLocal(x), span, len, bits);
            let v = self.push(GateOp::SplitInput(x), span, len, bits);
            return (u, v);
        }
        let open = self.push(GateOp::MaskedOpen(x), span, len, Kind::Ring);
        let c = self.push(GateOp::Decompose(open), span, len, bits);
        let r = self.push(GateOp::MaskBits(open), span, len, bits);
        (c, r)
    }

    /// `c ? a : b` for a one-plane `c` and ring `a`, `b`: `b + c·(a - b)`,
    /// one bit injection.
    pub fn select(&mut self, c: GateId, a: GateId, b: GateId, span: Span) -> Result<GateId, PlanError> {
        let diff_len = self.elementwise(a, b, span, "select")?;
        let len = match (self.gates[c].len, diff_len) {
            (Some(x), Some(y)) if x != y => {
                return Err(shape_error(span, format!("select of vectors of different lengths ({x} and {y})")));
            }
            (Some(x), _) | (_, Some(x)) => Some(x),
            (None, None) => None,
        };
        let diff = self.push(GateOp::Sub(a, b), span, diff_len, Kind::Ring);
        let picked = self.push(GateOp::Inject(c, diff), span, len, Kind::Ring);
        Ok(self.push(GateOp::Add(b, picked), span, len, Kind::Ring))
    }

    /// The best element of a non-empty ring vector `v` of `n` elements and,
    /// if `with_index`, its index (the first best): a tournament of adjacent pairs, so that
    /// position `k` of level `l` holds the best of the contiguous elements
    /// `[k·2^l, (k+1)·2^l)`; the upper element of a pair wins only when it
    /// is strictly better, so ties go to the lowest index. `ceil(log2 n)`
    /// levels of one comparison and one injection each.
    pub fn tournament(
        &mut self,
        v: GateId,
        n: usize,
        smallest: bool,
        with_index: bool,
        span: Span,
    ) -> Result<(GateId, Option<GateId>), PlanError> {
        if n == 0 {
            let what = if smallest { "the minimum" } else { "the maximum" };
            return Err(shape_error(span, format!("{what} of an empty vector")));
        }
        let mut values = v;
        let indices: Vec<u64> = (0..n as u64).collect();
        let mut index = self.push(GateOp::Public(PublicValue::Ring(indices)), span, Some(n), Kind::Ring);
        let mut len = n;
        while len > 1 {
            let pairs = len / 2;
            let take = |net: &mut Netlist, a: GateId, start: usize| {
                net.push(GateOp::Strided { a, start, step: 2, count: pairs }, span, Some(pairs), Kind::Ring)
            };
            let (lo, hi) = (take(self, values, 0), take(self, values, 1));
            let (lo_i, hi_i) = (take(self, index, 0), take(self, index, 1));
            // The upper element wins when strictly better.
            let diff =
                if smallest { self.ring2(GateOp::Sub, hi, lo, span) } else { self.ring2(GateOp::Sub, lo, hi, span) };
            let upper_wins = self.sign(diff, span);
            let mut next = self.select(upper_wins, hi, lo, span)?;
            // The index is selected only when it is asked for (public
            // indices: one daBit, no triple).
            let mut next_i = if with_index { self.select(upper_wins, hi_i, lo_i, span)? } else { index };
            if len % 2 == 1 {
                let last = |net: &mut Netlist, a: GateId| {
                    net.push(GateOp::Strided { a, start: len - 1, step: 1, count: 1 }, span, Some(1), Kind::Ring)
                };
                let (lv, li) = (last(self, values), last(self, index));
                next = self.push(GateOp::Concat(vec![next, lv]), span, Some(pairs + 1), Kind::Ring);
                if with_index {
                    next_i = self.push(GateOp::Concat(vec![next_i, li]), span, Some(pairs + 1), Kind::Ring);
                }
            }
            values = next;
            index = next_i;
            len = pairs + len % 2;
        }
        // One element left: as a scalar.
        let scalar = |net: &mut Netlist, a: GateId| {
            let zero = net.constant(0, span);
            net.push(GateOp::Add(a, zero), span, None, Kind::Ring)
        };
        let value = scalar(self, values);
        let index = with_index.then(|| scalar(self, index));
        Ok((value, index))
    }

    /// The element type an input gate carries.
    pub fn input_kind(elem: ElemType) -> Kind {
        match elem {
            ElemType::Bool => Kind::Bits(1),
            ElemType::Int | ElemType::Fixed => Kind::Ring,
        }
    }
}

/// Records the gates of a binary circuit ([`BinaryOps`] on gate ids).
pub struct Recorder<'a> {
    pub net: &'a mut Netlist,
    pub span: Span,
}

impl Recorder<'_> {
    fn bits(&mut self, op: GateOp, like: GateId, width: usize) -> GateId {
        let len = self.net.gates[like].len;
        self.net.push(op, self.span, len, Kind::Bits(width))
    }
}

impl BinaryOps for Recorder<'_> {
    type Bits = GateId;

    fn width(&self, a: &GateId) -> usize {
        match self.net.gates[*a].kind {
            Kind::Bits(w) => w,
            Kind::Ring => 0,
        }
    }

    fn xor(&mut self, a: &GateId, b: &GateId) -> GateId {
        let w = self.width(a);
        self.bits(GateOp::Xor(*a, *b), *a, w)
    }

    fn not(&mut self, a: &GateId) -> GateId {
        let w = self.width(a);
        self.bits(GateOp::Not(*a), *a, w)
    }

    fn and(&mut self, a: &GateId, b: &GateId) -> GateId {
        let w = self.width(a);
        self.bits(GateOp::And(*a, *b), *a, w)
    }

    fn gather(&mut self, a: &GateId, indices: &[usize]) -> GateId {
        self.bits(GateOp::Planes(*a, indices.to_vec()), *a, indices.len())
    }

    fn concat(&mut self, parts: &[&GateId]) -> GateId {
        let width = parts.iter().map(|p| self.width(p)).sum();
        let like = *parts[0];
        self.bits(GateOp::Stack(parts.iter().map(|p| **p).collect()), like, width)
    }
}

/// The carry out of the top position (as [`circuits::compare::carry_out`])
/// and the group propagate of all positions, `∧ p_i`: the same balanced
/// tree, with every segment's propagate kept (one AND more per level than
/// the carry alone).
fn carry_and_propagate<O: BinaryOps>(ops: &mut O, g: &O::Bits, p: &O::Bits) -> (O::Bits, O::Bits) {
    let mut g = g.clone();
    let mut p = p.clone();
    let mut segments = ops.width(&g);
    while segments > 1 {
        let pairs = segments / 2;
        let lower: Vec<usize> = (0..pairs).map(|k| 2 * k).collect();
        let upper: Vec<usize> = (0..pairs).map(|k| 2 * k + 1).collect();
        // One AND call per level: P_hi & G_lo and P_hi & P_lo.
        let left = {
            let a = ops.gather(&p, &upper);
            ops.concat(&[&a, &a])
        };
        let right = {
            let a = ops.gather(&g, &lower);
            let b = ops.gather(&p, &lower);
            ops.concat(&[&a, &b])
        };
        let products = ops.and(&left, &right);
        let carried = ops.gather(&products, &(0..pairs).collect::<Vec<_>>());
        let hi_g = ops.gather(&g, &upper);
        let mut next_g = ops.xor(&hi_g, &carried);
        let mut next_p = ops.gather(&products, &(pairs..2 * pairs).collect::<Vec<_>>());
        if segments % 2 == 1 {
            let top_g = ops.gather(&g, &[segments - 1]);
            let top_p = ops.gather(&p, &[segments - 1]);
            next_g = ops.concat(&[&next_g, &top_g]);
            next_p = ops.concat(&[&next_p, &top_p]);
        }
        g = next_g;
        p = next_p;
        segments = pairs + segments % 2;
    }
    (g, p)
}
