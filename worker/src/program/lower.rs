//! Type checking and lowering: an [`ast::Program`] to an [`ir::Circuit`].
//!
//! One pass does both. Each expression is checked and evaluated to a
//! [`Val`]: a compile-time constant (folded exactly, in `i64` or `f64`, and
//! encoded once when it meets a runtime value), a circuit node with its
//! source type (`int`/`fixed`, scalar/vector), or a per-party list (the
//! nodes of an input `from each`, one per party).
//!
//! The IR is type-agnostic ring arithmetic, so this pass inserts the
//! fixed-point scaling: an `int` meeting a `fixed` is multiplied by `2^f`,
//! a product of two `fixed` values is truncated (`DivPublic` by `2^f`),
//! `dot` and `variance` truncate each product before summing (so the range
//! limit bounds each product, not the sum), and every division
//! yields `fixed`. Identical operations are shared (hash-consing), so e.g.
//! `mean(x)` and `variance(x)` in one program compute `sum(x)` once.
//!
//! Bools (`bool`, comparisons, `and`/`or`/`not`/`xor`) are a third
//! element type that never mixes silently with numbers: comparisons lower
//! to `Less`/`Equal` (and `Not`), the comparison functions to `Select`,
//! `Min`/`Max`/`ArgMin`/`ArgMax`, and a bool enters arithmetic only where
//! the language defines it (`c * x` as `Select(c, x, 0)`, `+ - /`, `sum`,
//! `count` through `ToRing`). `docs/language.md` documents every rule and
//! its cost.

use std::collections::HashMap;

use super::CompileError;
use super::ast::{BinOp, Expr, ExprKind, Name, OwnerSpec, Program, Recipients, Stmt};
use super::ir::{
    CheckDecl, Circuit, ElemType, Func, InputDecl, InputShape, Node, Op, OutputDecl, Owners, PartyIndex, Span, ValueId,
};
use crate::fixed::{FixedPoint, SAFE_BOUND};
use crate::ring::from_signed;

/// The built-in functions, for error messages.
const FUNCTIONS: &[&str] = &[
    "abs",
    "aggregate",
    "argmax",
    "argmin",
    "clamp",
    "concat",
    "count",
    "count_distinct",
    "dot",
    "exp",
    "group_count",
    "group_keys",
    "group_mean",
    "group_sum",
    "histogram",
    "join_count",
    "join_sum",
    "len",
    "log",
    "max",
    "mean",
    "median",
    "min",
    "quantile",
    "rank",
    "rank_desc",
    "select",
    "sigmoid",
    "sort",
    "sort_by",
    "sort_by_desc",
    "sort_desc",
    "sqrt",
    "sum",
    "top_k",
    "variance",
];

fn err(span: Span, message: impl Into<String>) -> CompileError {
    CompileError { line: span.line, column: span.column, message: message.into() }
}

/// Scalar or vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Scalar,
    Vector,
}

impl From<InputShape> for Shape {
    fn from(s: InputShape) -> Self {
        match s {
            InputShape::Scalar => Shape::Scalar,
            InputShape::Vector => Shape::Vector,
        }
    }
}

/// A compile-time constant (always a public scalar).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Const {
    Int(i64),
    Fixed(f64),
    Bool(bool),
}

impl Const {
    /// The number (a bool counts as 0 or 1; callers convert bools
    /// explicitly before arithmetic).
    fn as_f64(self) -> f64 {
        match self {
            Const::Int(i) => i as f64,
            Const::Fixed(x) => x,
            Const::Bool(b) => f64::from(u8::from(b)),
        }
    }
}

/// The checked value of an expression.
#[derive(Clone, Debug)]
enum Val {
    Const(Const),
    /// A circuit node; public exactly when it does not depend on an input.
    Node {
        id: ValueId,
        elem: ElemType,
        shape: Shape,
    },
    /// A per-party list: the nodes of an input `from each`, in party order.
    List {
        parts: Vec<ValueId>,
        elem: ElemType,
        shape: Shape,
    },
}

fn elem_name(e: ElemType) -> &'static str {
    match e {
        ElemType::Int => "int",
        ElemType::Fixed => "fixed",
        ElemType::Bool => "bool",
    }
}

fn describe(v: &Val) -> String {
    match v {
        Val::Const(Const::Int(_)) => "an int constant".into(),
        Val::Const(Const::Fixed(_)) => "a fixed constant".into(),
        Val::Const(Const::Bool(_)) => "a bool constant".into(),
        Val::Node { elem, shape: Shape::Scalar, .. } => format!("{} {} scalar", article(*elem), elem_name(*elem)),
        Val::Node { elem, shape: Shape::Vector, .. } => format!("{} {} vector", article(*elem), elem_name(*elem)),
        Val::List { elem, shape, .. } => format!(
            "a per-party list of {} {}",
            elem_name(*elem),
            if *shape == Shape::Vector { "vectors" } else { "scalars" }
        ),
    }
}

fn article(e: ElemType) -> &'static str {
    match e {
        ElemType::Int => "an",
        ElemType::Fixed | ElemType::Bool => "a",
    }
}

/// A lowered operand: node, element type, shape.
#[derive(Clone, Copy)]
struct Operand {
    id: ValueId,
    elem: ElemType,
    shape: Shape,
}

struct Lowerer {
    fp: FixedPoint,
    parties: Vec<String>,
    nodes: Vec<Node>,
    secret: Vec<bool>,
    cse: HashMap<Op, ValueId>,
    inputs: Vec<InputDecl>,
    outputs: Vec<OutputDecl>,
    /// Variables: value and where defined.
    env: HashMap<String, (Val, Span)>,
}

/// Check and lower a parsed program for the job's `parties`.
pub fn lower(program: &Program, parties: &[String]) -> Result<Circuit, CompileError> {
    let frac_bits = program.frac_bits.map(|(f, _)| f).unwrap_or(crate::fixed::DEFAULT_FRAC_BITS);
    let fp = FixedPoint::new(frac_bits).ok_or_else(|| {
        let span = program.frac_bits.map(|(_, s)| s).unwrap_or_default();
        err(span, "unsupported number of fractional bits")
    })?;
    let mut lw = Lowerer {
        fp,
        parties: parties.to_vec(),
        nodes: Vec::new(),
        secret: Vec::new(),
        cse: HashMap::new(),
        inputs: Vec::new(),
        outputs: Vec::new(),
        env: HashMap::new(),
    };
    for stmt in &program.stmts {
        lw.stmt(stmt)?;
    }
    // A program that outputs nothing computes nothing anyone receives:
    // refuse it here rather than run a whole job for it.
    if lw.outputs.is_empty() {
        return Err(match program.stmts.last() {
            None => {
                err(Span { line: 1, column: 1 }, "the program is empty: it needs at least one `output NAME = EXPR`")
            }
            Some(Stmt::Input { span, .. } | Stmt::Let { span, .. } | Stmt::Output { span, .. }) => err(
                *span,
                "the program has no outputs: it needs at least one `output NAME = EXPR` (this is its last statement)",
            ),
        });
    }
    let checks = if program.range_check.is_some() { lw.range_checks() } else { Vec::new() };
    Ok(Circuit { frac_bits, parties: lw.parties, inputs: lw.inputs, nodes: lw.nodes, outputs: lw.outputs, checks })
}

impl Lowerer {
    // ---- node construction -------------------------------------------

    fn push(&mut self, op: Op, span: Span) -> ValueId {
        let shareable = !matches!(op, Op::Input { .. });
        if shareable && let Some(&id) = self.cse.get(&op) {
            return id;
        }
        let secret = match &op {
            Op::Input { .. } => true,
            Op::Len(_) | Op::Const(_) | Op::Bool(_) => false,
            other => other.operands().iter().any(|&a| self.secret[a]),
        };
        let id = self.nodes.len();
        if shareable {
            self.cse.insert(op.clone(), id);
        }
        self.nodes.push(Node { op, span });
        self.secret.push(secret);
        id
    }

    fn konst(&mut self, v: u64, span: Span) -> ValueId {
        self.push(Op::Const(v), span)
    }

    fn scale(&self) -> u64 {
        self.fp.scale()
    }

    fn is_public(&self, v: &Val) -> bool {
        match v {
            Val::Const(_) => true,
            Val::Node { id, .. } => !self.secret[*id],
            Val::List { .. } => false,
        }
    }

    /// Multiply by the public constant `k` (the ring element).
    fn mul_const(&mut self, id: ValueId, k: u64, span: Span) -> ValueId {
        if k == 1 {
            return id;
        }
        let c = self.konst(k, span);
        self.push(Op::Mul(id, c), span)
    }

    /// Divide by the public positive constant `k`.
    fn div_const(&mut self, id: ValueId, k: u64, span: Span) -> ValueId {
        if k == 1 {
            return id;
        }
        let c = self.konst(k, span);
        self.push(Op::DivPublic(id, c), span)
    }

    /// Encode a constant as `elem` (an int constant may become fixed; a
    /// fixed constant never becomes int).
    fn encode_const(&self, c: Const, elem: ElemType, span: Span) -> Result<u64, CompileError> {
        match (c, elem) {
            (Const::Int(i), ElemType::Int) => Ok(from_signed(i)),
            (c, _) => {
                let x = c.as_f64();
                self.check_fixed(x, span)?;
                self.fp.encode(x).map_err(|_| self.fixed_range_error(span))
            }
        }
    }

    fn fixed_range_error(&self, span: Span) -> CompileError {
        err(
            span,
            format!(
                "fixed-point constant out of range: with {} fractional bits, values must lie strictly between -2^{} and 2^{}",
                self.fp.frac_bits(),
                62 - self.fp.frac_bits(),
                62 - self.fp.frac_bits()
            ),
        )
    }

    fn check_fixed(&self, x: f64, span: Span) -> Result<(), CompileError> {
        if !x.is_finite() || (x * self.scale() as f64).round().abs() >= SAFE_BOUND as f64 {
            return Err(self.fixed_range_error(span));
        }
        Ok(())
    }

    fn check_int(&self, x: Option<i64>, span: Span) -> Result<Const, CompileError> {
        match x {
            Some(v) if v.unsigned_abs() < SAFE_BOUND => Ok(Const::Int(v)),
            _ => Err(err(span, "integer constant out of range: integers must lie strictly between -2^62 and 2^62")),
        }
    }

    /// Materialize a value as a node (constants become `Const` nodes).
    /// `want` = `Some(Fixed)` promotes an int to fixed.
    fn operand(&mut self, v: &Val, span: Span, want: Option<ElemType>) -> Result<Operand, CompileError> {
        match v {
            Val::Const(Const::Bool(b)) => {
                Ok(Operand { id: self.push(Op::Bool(*b), span), elem: ElemType::Bool, shape: Shape::Scalar })
            }
            Val::Const(c) => {
                let elem = match (c, want) {
                    (Const::Int(_), Some(ElemType::Fixed)) | (Const::Fixed(_), _) => ElemType::Fixed,
                    (Const::Int(_), _) => ElemType::Int,
                    (Const::Bool(_), _) => ElemType::Bool,
                };
                let enc = self.encode_const(*c, elem, span)?;
                Ok(Operand { id: self.konst(enc, span), elem, shape: Shape::Scalar })
            }
            Val::Node { id, elem, shape } => {
                if want == Some(ElemType::Fixed) && *elem == ElemType::Int {
                    let scaled = self.mul_const(*id, self.scale(), span);
                    Ok(Operand { id: scaled, elem: ElemType::Fixed, shape: *shape })
                } else {
                    Ok(Operand { id: *id, elem: *elem, shape: *shape })
                }
            }
            Val::List { .. } => Err(list_misuse(span)),
        }
    }

    fn vector(&mut self, func: &str, v: &Val, span: Span) -> Result<Operand, CompileError> {
        match v {
            Val::Node { id, elem, shape: Shape::Vector } => Ok(Operand { id: *id, elem: *elem, shape: Shape::Vector }),
            Val::List { .. } => Err(err(
                span,
                format!(
                    "`{func}` expects a vector, found {}; use concat(...) or aggregate(...) to make one",
                    describe(v)
                ),
            )),
            other => Err(err(span, format!("`{func}` expects a vector, found {}", describe(other)))),
        }
    }

    fn party_index(&self, name: &Name) -> Result<PartyIndex, CompileError> {
        self.parties.iter().position(|p| *p == name.text).ok_or_else(|| {
            err(name.span, format!("unknown party `{}`; the job's parties are: {}", name.text, self.parties.join(", ")))
        })
    }

    fn bind(&mut self, name: &Name, val: Val) -> Result<(), CompileError> {
        if let Some((_, at)) = self.env.get(&name.text) {
            return Err(err(name.span, format!("`{}` is already defined at {at}", name.text)));
        }
        self.env.insert(name.text.clone(), (val, name.span));
        Ok(())
    }

    // ---- statements ----------------------------------------------------

    fn stmt(&mut self, stmt: &Stmt) -> Result<(), CompileError> {
        match stmt {
            Stmt::Input { name, elem, shape, owners, .. } => {
                if let Some((_, at)) = self.env.get(&name.text) {
                    return Err(err(name.span, format!("`{}` is already defined at {at}", name.text)));
                }
                let index = self.inputs.len();
                let (owners, val) = match owners {
                    OwnerSpec::Party(p) => {
                        let party = self.party_index(p)?;
                        let id = self.push(Op::Input { input: index, party }, name.span);
                        (Owners::Party(party), Val::Node { id, elem: *elem, shape: (*shape).into() })
                    }
                    OwnerSpec::Each => {
                        let parts = (0..self.parties.len())
                            .map(|party| self.push(Op::Input { input: index, party }, name.span));
                        let parts = parts.collect();
                        (Owners::Each, Val::List { parts, elem: *elem, shape: (*shape).into() })
                    }
                };
                self.inputs.push(InputDecl {
                    name: name.text.clone(),
                    elem: *elem,
                    shape: *shape,
                    owners,
                    span: name.span,
                });
                self.bind(name, val)
            }
            Stmt::Let { name, value, .. } => {
                let v = self.expr(value)?;
                self.bind(name, v)
            }
            Stmt::Output { name, value, to, .. } => {
                if let Some(first) = self.outputs.iter().find(|o| o.name == name.text) {
                    return Err(err(
                        name.span,
                        format!("duplicate output `{}` (first declared at {})", name.text, first.span),
                    ));
                }
                let v = self.expr(value)?;
                if let Val::List { .. } = v {
                    return Err(err(
                        value.span,
                        format!("cannot output {}; use concat(...) or aggregate(...)", describe(&v)),
                    ));
                }
                let op = self.operand(&v, value.span, None)?;
                let recipients = match to {
                    Recipients::All => (0..self.parties.len()).collect(),
                    Recipients::Parties(names) => {
                        let mut r = names.iter().map(|n| self.party_index(n)).collect::<Result<Vec<_>, _>>()?;
                        r.sort_unstable();
                        r.dedup();
                        r
                    }
                };
                self.outputs.push(OutputDecl {
                    name: name.text.clone(),
                    value: op.id,
                    elem: op.elem,
                    recipients,
                    span: name.span,
                });
                // `output x = x` re-exports a variable; otherwise the output
                // name becomes a variable too.
                if value.kind != ExprKind::Var(name.text.clone()) {
                    self.bind(name, v)?;
                }
                Ok(())
            }
        }
    }

    // ---- expressions ---------------------------------------------------

    fn expr(&mut self, e: &Expr) -> Result<Val, CompileError> {
        match &e.kind {
            ExprKind::Int(v) => Ok(Val::Const(Const::Int(*v))),
            ExprKind::Bool(b) => Ok(Val::Const(Const::Bool(*b))),
            ExprKind::Float(x) => {
                self.check_fixed(*x, e.span)?;
                Ok(Val::Const(Const::Fixed(*x)))
            }
            ExprKind::Var(name) => match self.env.get(name) {
                Some((v, _)) => Ok(v.clone()),
                None if FUNCTIONS.contains(&name.as_str()) => {
                    Err(err(e.span, format!("`{name}` is a function; call it with arguments, e.g. `{name}(x)`")))
                }
                None => Err(err(e.span, format!("unknown identifier `{name}`"))),
            },
            ExprKind::Neg(inner) => {
                let v = self.expr(inner)?;
                let v = self.numeric(v, inner.span);
                match v {
                    Val::Const(Const::Int(i)) => Ok(Val::Const(Const::Int(-i))),
                    Val::Const(Const::Fixed(x)) => Ok(Val::Const(Const::Fixed(-x))),
                    Val::Const(Const::Bool(_)) => unreachable!("converted by numeric"),
                    Val::Node { id, elem, shape } => Ok(Val::Node { id: self.push(Op::Neg(id), e.span), elem, shape }),
                    Val::List { .. } => Err(list_misuse(inner.span)),
                }
            }
            ExprKind::Not(inner) => {
                let v = self.expr(inner)?;
                self.expect_bool("`not`", &v, inner.span)?;
                Ok(self.not(&v, e.span))
            }
            ExprKind::Binary { op, op_span, lhs, rhs } => {
                let l = self.expr(lhs)?;
                let r = self.expr(rhs)?;
                for (v, s) in [(&l, lhs.span), (&r, rhs.span)] {
                    if let Val::List { .. } = v {
                        return Err(if op.is_comparison() {
                            err(
                                s,
                                "cannot compare a per-party list (an input `from each`); compare one party's \
                                 value x[PARTY], or concat(x) or aggregate(x)",
                            )
                        } else {
                            list_misuse(s)
                        });
                    }
                }
                if op.is_comparison() {
                    return self.compare(*op, *op_span, &l, lhs.span, &r, rhs.span);
                }
                if op.is_logic() {
                    self.expect_bool(&format!("`{}`", op.symbol()), &l, lhs.span)?;
                    self.expect_bool(&format!("`{}`", op.symbol()), &r, rhs.span)?;
                    return Ok(self.logic(*op, *op_span, &l, &r));
                }
                self.binary(*op, *op_span, &l, lhs.span, &r, rhs.span)
            }
            ExprKind::Index { base, party } => {
                let v = self.expr(base)?;
                let Val::List { parts, elem, shape } = v else {
                    return Err(err(
                        base.span,
                        format!(
                            "only a per-party list (an input `from each`) can be indexed by party; found {}",
                            describe(&v)
                        ),
                    ));
                };
                let p = self.party_index(party)?;
                Ok(Val::Node { id: parts[p], elem, shape })
            }
            ExprKind::Call { name, args } => {
                let vals = args.iter().map(|a| self.expr(a)).collect::<Result<Vec<_>, _>>()?;
                let spans: Vec<Span> = args.iter().map(|a| a.span).collect();
                self.call(name, &vals, &spans)
            }
            ExprKind::Vector(elements) => {
                if elements.is_empty() {
                    return Err(err(e.span, "an empty vector `[]` has no element type; write at least one element"));
                }
                let vals = elements.iter().map(|a| self.expr(a)).collect::<Result<Vec<_>, _>>()?;
                for (v, el) in vals.iter().zip(elements) {
                    if matches!(v, Val::List { .. } | Val::Node { shape: Shape::Vector, .. }) {
                        return Err(err(
                            el.span,
                            format!(
                                "the elements of `[...]` are scalars, found {}; use concat(...) to join vectors",
                                describe(v)
                            ),
                        ));
                    }
                }
                let spans: Vec<Span> = elements.iter().map(|a| a.span).collect();
                let name = Name { text: "concat".into(), span: e.span };
                self.call(&name, &vals, &spans)
            }
        }
    }

    fn fold(&self, op: BinOp, l: Const, r: Const, span: Span) -> Result<Val, CompileError> {
        let c = match (op, l, r) {
            (BinOp::Add, Const::Int(a), Const::Int(b)) => self.check_int(a.checked_add(b), span)?,
            (BinOp::Sub, Const::Int(a), Const::Int(b)) => self.check_int(a.checked_sub(b), span)?,
            (BinOp::Mul, Const::Int(a), Const::Int(b)) => self.check_int(a.checked_mul(b), span)?,
            (op, l, r) => {
                let (a, b) = (l.as_f64(), r.as_f64());
                let x = match op {
                    BinOp::Add => a + b,
                    BinOp::Sub => a - b,
                    BinOp::Mul => a * b,
                    BinOp::Div => {
                        if b == 0.0 {
                            return Err(err(span, "division by zero"));
                        }
                        a / b
                    }
                    other => unreachable!("`{}` is not arithmetic", other.symbol()),
                };
                self.check_fixed(x, span)?;
                Const::Fixed(x)
            }
        };
        Ok(Val::Const(c))
    }

    /// Arithmetic `+ - * /`. A bool operand is the int 0 or 1, except in
    /// a product with a number, which is a selection (see [`Self::mul`]).
    fn binary(&mut self, op: BinOp, span: Span, l: &Val, ls: Span, r: &Val, rs: Span) -> Result<Val, CompileError> {
        if op == BinOp::Mul && (elem_of(l) == ElemType::Bool || elem_of(r) == ElemType::Bool) {
            return self.mul_bool(span, l, ls, r, rs);
        }
        let l = &self.numeric(l.clone(), ls);
        let r = &self.numeric(r.clone(), rs);
        if let (Val::Const(a), Val::Const(b)) = (l, r) {
            return self.fold(op, *a, *b, span);
        }
        match op {
            BinOp::Add | BinOp::Sub => {
                let fixed = elem_of(l) == ElemType::Fixed || elem_of(r) == ElemType::Fixed;
                let want = fixed.then_some(ElemType::Fixed);
                let a = self.operand(l, ls, want)?;
                let b = self.operand(r, rs, want)?;
                let node = if op == BinOp::Add { Op::Add(a.id, b.id) } else { Op::Sub(a.id, b.id) };
                let id = self.push(node, span);
                Ok(Val::Node { id, elem: a.elem, shape: join(a.shape, b.shape) })
            }
            BinOp::Mul => self.mul(span, l, ls, r, rs),
            BinOp::Div => self.div(span, l, ls, r, rs),
            other => unreachable!("`{}` is not arithmetic", other.symbol()),
        }
    }

    fn mul(&mut self, span: Span, l: &Val, ls: Span, r: &Val, rs: Span) -> Result<Val, CompileError> {
        // A constant factor: no truncation unless it is a fixed constant
        // with a fractional part multiplying a fixed value.
        let konst = match (l, r) {
            (Val::Const(c), other) => Some((*c, other, rs)),
            (other, Val::Const(c)) => Some((*c, other, ls)),
            _ => None,
        };
        if let Some((c, other, other_span)) = konst {
            let x = self.operand(other, other_span, None)?;
            let (k, elem, truncate) = match (c, x.elem) {
                (Const::Int(k), e) => (from_signed(k), e, false),
                (Const::Fixed(v), ElemType::Fixed) if v.fract() == 0.0 => {
                    (from_signed(v as i64), ElemType::Fixed, false)
                }
                (Const::Fixed(_), ElemType::Fixed) => {
                    (self.encode_const(c, ElemType::Fixed, span)?, ElemType::Fixed, true)
                }
                (Const::Fixed(_), ElemType::Int | ElemType::Bool) => {
                    (self.encode_const(c, ElemType::Fixed, span)?, ElemType::Fixed, false)
                }
                (Const::Bool(_), _) => unreachable!("bools are converted before a product"),
            };
            let c_id = self.konst(k, span);
            let mut id = self.push(Op::Mul(x.id, c_id), span);
            if truncate {
                id = self.div_const(id, self.scale(), span);
            }
            return Ok(Val::Node { id, elem, shape: x.shape });
        }
        let a = self.operand(l, ls, None)?;
        let b = self.operand(r, rs, None)?;
        let mut id = self.push(Op::Mul(a.id, b.id), span);
        let elem = if a.elem == ElemType::Fixed && b.elem == ElemType::Fixed {
            id = self.div_const(id, self.scale(), span);
            ElemType::Fixed
        } else if a.elem == ElemType::Fixed || b.elem == ElemType::Fixed {
            ElemType::Fixed
        } else {
            ElemType::Int
        };
        Ok(Val::Node { id, elem, shape: join(a.shape, b.shape) })
    }

    fn div(&mut self, span: Span, l: &Val, ls: Span, r: &Val, rs: Span) -> Result<Val, CompileError> {
        if !self.is_public(r) {
            // A secret divisor: a fixed-point division (`DivSecret`, see
            // docs/fixed-point-functions.md for its error bound).
            let a = self.operand(l, ls, Some(ElemType::Fixed))?;
            let b = self.operand(r, rs, Some(ElemType::Fixed))?;
            let id = self.push(Op::DivSecret(a.id, b.id), span);
            return Ok(Val::Node { id, elem: ElemType::Fixed, shape: join(a.shape, b.shape) });
        }
        // The divisor: a positive public scalar node, whether it is
        // fixed-encoded, and whether the quotient must be negated.
        let (divisor, divisor_fixed, negate) = match r {
            Val::Const(c) => {
                let v = c.as_f64();
                if v == 0.0 {
                    return Err(err(rs, "division by zero"));
                }
                let negate = v < 0.0;
                match c {
                    Const::Int(k) => (self.konst(k.unsigned_abs(), rs), false, negate),
                    Const::Fixed(x) if x.fract() == 0.0 => (self.konst(x.abs() as u64, rs), false, negate),
                    Const::Fixed(x) => {
                        let enc = self.encode_const(Const::Fixed(x.abs()), ElemType::Fixed, rs)?;
                        if enc == 0 {
                            return Err(err(
                                rs,
                                format!("divisor rounds to zero with {} fractional bits", self.fp.frac_bits()),
                            ));
                        }
                        (self.konst(enc, rs), true, negate)
                    }
                    Const::Bool(_) => unreachable!("bools are converted before a division"),
                }
            }
            _ => {
                let d = self.operand(r, rs, None)?;
                if d.shape != Shape::Scalar {
                    return Err(err(rs, format!("the divisor must be a scalar, found {}", describe(r))));
                }
                (d.id, d.elem == ElemType::Fixed, false)
            }
        };
        let x = self.operand(l, ls, Some(ElemType::Fixed))?;
        let mut dividend = x.id;
        if divisor_fixed {
            dividend = self.mul_const(dividend, self.scale(), span);
        }
        let mut id = self.push(Op::DivPublic(dividend, divisor), span);
        if negate {
            id = self.push(Op::Neg(id), span);
        }
        Ok(Val::Node { id, elem: ElemType::Fixed, shape: x.shape })
    }

    fn call(&mut self, name: &Name, args: &[Val], spans: &[Span]) -> Result<Val, CompileError> {
        let f = name.text.as_str();
        let span = name.span;
        let arity = |n: usize| -> Result<(), CompileError> {
            if args.len() == n {
                Ok(())
            } else {
                let plural = if n == 1 { "" } else { "s" };
                Err(err(span, format!("`{f}` takes {n} argument{plural}, found {}", args.len())))
            }
        };
        match f {
            "sum" => {
                arity(1)?;
                // A bool vector counts its true elements.
                let a = self.numeric(args[0].clone(), spans[0]);
                let v = self.vector(f, &a, spans[0])?;
                Ok(Val::Node { id: self.push(Op::Sum(v.id), span), elem: v.elem, shape: Shape::Scalar })
            }
            "len" => {
                arity(1)?;
                if let Val::List { .. } = args[0] {
                    return Err(err(
                        spans[0],
                        "`len` of a per-party list is not defined; use len(concat(x)) for the total number of \
                         elements or len(x[PARTY]) for one party's",
                    ));
                }
                let v = self.vector(f, &args[0], spans[0])?;
                Ok(Val::Node { id: self.push(Op::Len(v.id), span), elem: ElemType::Int, shape: Shape::Scalar })
            }
            "dot" => {
                arity(2)?;
                let a = self.vector(f, &args[0], spans[0])?;
                let b = self.vector(f, &args[1], spans[1])?;
                if a.elem == ElemType::Bool || b.elem == ElemType::Bool {
                    // Products with a bool are selections: Σ select(c, x, 0).
                    let (av, bv) = (self.val(a), self.val(b));
                    let Val::Node { id, elem, .. } = self.mul_bool(span, &av, spans[0], &bv, spans[1])? else {
                        unreachable!("a product of vectors is a node")
                    };
                    return Ok(Val::Node { id: self.push(Op::Sum(id), span), elem, shape: Shape::Scalar });
                }
                let mut p = self.push(Op::Mul(a.id, b.id), span);
                let elem = match (a.elem, b.elem) {
                    (ElemType::Int, ElemType::Int) => ElemType::Int,
                    (ElemType::Fixed, ElemType::Fixed) => {
                        // Truncate every product before summing: the range
                        // limit 2^(62-2f) then applies to each product, not
                        // to their sum, and the truncation's stochastic
                        // rounding keeps the sum unbiased.
                        p = self.div_const(p, self.scale(), span);
                        ElemType::Fixed
                    }
                    _ => ElemType::Fixed,
                };
                let id = self.push(Op::Sum(p), span);
                Ok(Val::Node { id, elem, shape: Shape::Scalar })
            }
            "mean" => {
                arity(1)?;
                let a = self.numeric(args[0].clone(), spans[0]);
                let v = self.vector(f, &a, spans[0])?;
                let n = self.push(Op::Len(v.id), span);
                let s = self.push(Op::Sum(v.id), span);
                let s = if v.elem == ElemType::Int { self.mul_const(s, self.scale(), span) } else { s };
                Ok(Val::Node { id: self.push(Op::DivPublic(s, n), span), elem: ElemType::Fixed, shape: Shape::Scalar })
            }
            "variance" => {
                arity(1)?;
                let a = self.numeric(args[0].clone(), spans[0]);
                let v = self.vector(f, &a, spans[0])?;
                let n = self.push(Op::Len(v.id), span);
                let s1 = self.push(Op::Sum(v.id), span);
                let sq = self.push(Op::Mul(v.id, v.id), span);
                let (mean, mean_sq) = if v.elem == ElemType::Int {
                    let s2 = self.push(Op::Sum(sq), span);
                    // Sums are exact integers; scale them to fixed, divide by n.
                    let s1 = self.mul_const(s1, self.scale(), span);
                    let s2 = self.mul_const(s2, self.scale(), span);
                    (self.push(Op::DivPublic(s1, n), span), self.push(Op::DivPublic(s2, n), span))
                } else {
                    // Truncate each square before summing, so that the range
                    // limit 2^(62-2f) bounds each square rather than their
                    // sum (a sum of squares outgrows it quickly).
                    let sq = self.div_const(sq, self.scale(), span);
                    let s2 = self.push(Op::Sum(sq), span);
                    (self.push(Op::DivPublic(s1, n), span), self.push(Op::DivPublic(s2, n), span))
                };
                let m2 = self.push(Op::Mul(mean, mean), span);
                let m2 = self.div_const(m2, self.scale(), span);
                Ok(Val::Node { id: self.push(Op::Sub(mean_sq, m2), span), elem: ElemType::Fixed, shape: Shape::Scalar })
            }
            "concat" => {
                if args.is_empty() {
                    return Err(err(span, "`concat` takes at least 1 argument, found 0"));
                }
                // All bools (a bool vector) or all numbers: the IR keeps
                // the two kinds of values apart.
                let bools = args.iter().map(|a| elem_of(a) == ElemType::Bool).collect::<Vec<_>>();
                if bools.iter().any(|&b| b) && !bools.iter().all(|&b| b) {
                    let (i, _) = bools.iter().enumerate().find(|(_, b)| **b).expect("some bool");
                    return Err(err(
                        spans[i],
                        format!(
                            "`concat` cannot mix bools and numbers, found {}; convert a bool c to 0 or 1 with `c * 1`",
                            describe(&args[i])
                        ),
                    ));
                }
                let fixed = args.iter().any(|a| elem_of(a) == ElemType::Fixed);
                let want = fixed.then_some(ElemType::Fixed);
                let mut parts = Vec::new();
                for (a, s) in args.iter().zip(spans) {
                    match a {
                        Val::List { parts: ps, elem, shape } => {
                            for &p in ps {
                                let node = Val::Node { id: p, elem: *elem, shape: *shape };
                                parts.push(self.operand(&node, *s, want)?.id);
                            }
                        }
                        other => parts.push(self.operand(other, *s, want)?.id),
                    }
                }
                let elem = if bools[0] {
                    ElemType::Bool
                } else if fixed {
                    ElemType::Fixed
                } else {
                    ElemType::Int
                };
                Ok(Val::Node { id: self.push(Op::Concat(parts), span), elem, shape: Shape::Vector })
            }
            "aggregate" => {
                arity(1)?;
                // Bools are summed as 0/1: how many parties hold true.
                let a = self.numeric(args[0].clone(), spans[0]);
                let Val::List { parts, elem, shape } = &a else {
                    return Err(err(
                        spans[0],
                        format!(
                            "`aggregate` expects a per-party list (an input `from each`), found {}",
                            describe(&args[0])
                        ),
                    ));
                };
                let mut acc = parts[0];
                for &p in &parts[1..] {
                    acc = self.push(Op::Add(acc, p), span);
                }
                Ok(Val::Node { id: acc, elem: *elem, shape: *shape })
            }
            "select" => {
                arity(3)?;
                self.select(f, span, args, spans)
            }
            "abs" => {
                arity(1)?;
                self.expect_number(f, &args[0], spans[0])?;
                match &args[0] {
                    Val::Const(Const::Int(i)) => Ok(Val::Const(Const::Int(i.abs()))),
                    Val::Const(Const::Fixed(x)) => Ok(Val::Const(Const::Fixed(x.abs()))),
                    v => {
                        let x = self.operand(v, spans[0], None)?;
                        let zero = self.konst(0, span);
                        let negative = self.push(Op::Less(x.id, zero), span);
                        let negated = self.push(Op::Neg(x.id), span);
                        let id = self.push(Op::Select(negative, negated, x.id), span);
                        Ok(Val::Node { id, elem: x.elem, shape: x.shape })
                    }
                }
            }
            "min" | "max" => self.min_max(f, span, args, spans),
            "argmin" | "argmax" => {
                arity(1)?;
                let v = self.vector(f, &args[0], spans[0])?;
                if v.elem == ElemType::Bool {
                    return Err(err(spans[0], format!("`{f}` expects a vector of numbers, found a bool vector")));
                }
                let op = if f == "argmin" { Op::ArgMin(v.id) } else { Op::ArgMax(v.id) };
                Ok(Val::Node { id: self.push(op, span), elem: ElemType::Int, shape: Shape::Scalar })
            }
            "clamp" => {
                arity(3)?;
                self.clamp(span, args, spans)
            }
            "count" => {
                arity(1)?;
                let v = self.vector(f, &args[0], spans[0])?;
                if v.elem != ElemType::Bool {
                    return Err(err(spans[0], format!("`count` expects a bool vector, found {}", describe(&args[0]))));
                }
                let ones = self.push(Op::ToRing(v.id), span);
                Ok(Val::Node { id: self.push(Op::Sum(ones), span), elem: ElemType::Int, shape: Shape::Scalar })
            }
            "sort" | "sort_desc" => {
                arity(1)?;
                let v = self.numbers(f, &args[0], spans[0])?;
                let op = Op::SortBy { key: v.id, value: v.id, descending: f == "sort_desc" };
                Ok(Val::Node { id: self.push(op, span), elem: v.elem, shape: Shape::Vector })
            }
            "sort_by" | "sort_by_desc" => {
                arity(2)?;
                let key = self.numbers(f, &args[0], spans[0])?;
                let v = self.numbers(f, &args[1], spans[1])?;
                let op = Op::SortBy { key: key.id, value: v.id, descending: f == "sort_by_desc" };
                Ok(Val::Node { id: self.push(op, span), elem: v.elem, shape: Shape::Vector })
            }
            "rank" | "rank_desc" => {
                arity(1)?;
                let v = self.numbers(f, &args[0], spans[0])?;
                // A rank and a sort of the same key and direction share
                // one sort (`executor::plan`).
                let id = self.push(Op::Rank { v: v.id, descending: f == "rank_desc" }, span);
                Ok(Val::Node { id, elem: ElemType::Int, shape: Shape::Vector })
            }
            "median" => {
                arity(1)?;
                self.quantile(f, span, &args[0], spans[0], 0.5)
            }
            "quantile" => {
                arity(2)?;
                let q = match args[1] {
                    Val::Const(c @ (Const::Int(_) | Const::Fixed(_))) if (0.0..=1.0).contains(&c.as_f64()) => {
                        c.as_f64()
                    }
                    _ => {
                        return Err(err(
                            spans[1],
                            format!("`quantile` takes a constant q between 0 and 1, found {}", describe(&args[1])),
                        ));
                    }
                };
                self.quantile(f, span, &args[0], spans[0], q)
            }
            "top_k" => {
                arity(2)?;
                let v = self.numbers(f, &args[0], spans[0])?;
                let k = match &args[1] {
                    Val::Const(Const::Int(k)) if *k >= 0 => self.konst(from_signed(*k), spans[1]),
                    Val::Node { id, elem: ElemType::Int, shape: Shape::Scalar } if !self.secret[*id] => *id,
                    other => {
                        return Err(err(
                            spans[1],
                            format!("`top_k` takes a public non-negative int k, found {}", describe(other)),
                        ));
                    }
                };
                let sorted = self.push(Op::SortBy { key: v.id, value: v.id, descending: true }, span);
                let zero = self.konst(0, span);
                let id = self.push(Op::Slice { v: sorted, start: zero, count: k }, span);
                Ok(Val::Node { id, elem: v.elem, shape: Shape::Vector })
            }
            "histogram" => {
                arity(2)?;
                self.histogram(span, args, spans)
            }
            "group_count" | "group_sum" | "group_mean" => self.group(f, span, args, spans),
            "group_keys" | "count_distinct" => {
                arity(1)?;
                self.group_by_sorting(f, span, args, spans)
            }
            "join_count" | "join_sum" => {
                arity(if f == "join_count" { 2 } else { 3 })?;
                let a = self.keys(f, &args[0], spans[0])?;
                let b = self.keys(f, &args[1], spans[1])?;
                if f == "join_count" {
                    let id = self.push(Op::JoinCount(a, b), span);
                    return Ok(Val::Node { id, elem: ElemType::Int, shape: Shape::Scalar });
                }
                let v = self.numbers(f, &args[2], spans[2])?;
                let id = self.push(Op::JoinSum(a, b, v.id), span);
                Ok(Val::Node { id, elem: v.elem, shape: Shape::Scalar })
            }
            "sqrt" | "exp" | "log" | "sigmoid" => {
                arity(1)?;
                let func = match f {
                    "sqrt" => Func::Sqrt,
                    "exp" => Func::Exp,
                    "log" => Func::Log,
                    _ => Func::Sigmoid,
                };
                self.expect_number(f, &args[0], spans[0])?;
                if let Val::Const(c) = args[0] {
                    // Folded exactly as `plain::func` defines it.
                    let enc = self.encode_const(c, ElemType::Fixed, spans[0])?;
                    let y = crate::program::plain::func(func, enc, self.fp.frac_bits());
                    return Ok(Val::Const(Const::Fixed(crate::ring::to_signed(y) as f64 / self.scale() as f64)));
                }
                let x = self.operand(&args[0], spans[0], Some(ElemType::Fixed))?;
                let id = self.push(Op::Func(func, x.id), span);
                Ok(Val::Node { id, elem: ElemType::Fixed, shape: x.shape })
            }
            _ => Err(err(span, format!("unknown function `{f}`; the functions are: {}", FUNCTIONS.join(", ")))),
        }
    }

    // ---- range checks ------------------------------------------------

    /// The checks `range_check` adds, after the whole program is lowered
    /// (see "Range checks" in docs/language.md): every product with a
    /// secret operand must fit the range ([`Op::ProductFits`]), and a
    /// secret *sum* (the result of `+`, `-`, negation, `sum`, `aggregate`,
    /// `join_sum`) must be in range ([`Op::InRange`]) where it is divided,
    /// compared, sorted, passed to a fixed-point function or output.
    /// Inputs are in range by their encoding, and products, divisions and
    /// the other operations keep checked values in range, so nothing else
    /// needs a check. Each check is reduced to one bool per operation.
    fn range_checks(&mut self) -> Vec<CheckDecl> {
        let summed = |lw: &Lowerer, id: ValueId| {
            lw.secret[id]
                && match &lw.nodes[id].op {
                    Op::Add(..) | Op::Sub(..) | Op::Neg(_) | Op::Sum(_) | Op::JoinSum(..) | Op::RunTotals { .. } => {
                        true
                    }
                    Op::Concat(parts) => {
                        parts.iter().any(|p| lw.secret[*p] && !matches!(lw.nodes[*p].op, Op::Input { .. }))
                    }
                    _ => false,
                }
        };
        let mut wanted: Vec<(Op, Span)> = Vec::new();
        let original = self.nodes.len();
        for id in 0..original {
            if !self.secret[id] {
                continue;
            }
            let span = self.nodes[id].span;
            let op = self.nodes[id].op.clone();
            match op {
                Op::Mul(a, b) => wanted.push((Op::ProductFits(a, b), span)),
                Op::DivPublic(a, _) if summed(self, a) => wanted.push((Op::InRange(a), span)),
                Op::Less(..)
                | Op::Equal(..)
                | Op::Min(_)
                | Op::Max(_)
                | Op::ArgMin(_)
                | Op::ArgMax(_)
                | Op::SortBy { .. }
                | Op::Rank { .. }
                | Op::Quantile { .. }
                | Op::JoinCount(..)
                | Op::JoinSum(..)
                | Op::DivSecret(..)
                | Op::Func(..) => {
                    for o in op.operands() {
                        if summed(self, o) {
                            wanted.push((Op::InRange(o), span));
                        }
                    }
                }
                _ => {}
            }
        }
        for output in self.outputs.clone() {
            if summed(self, output.value) {
                wanted.push((Op::InRange(output.value), output.span));
            }
        }
        let mut checks: Vec<CheckDecl> = Vec::new();
        let vectors = self.vector_nodes();
        for (op, span) in wanted {
            let vector = op.operands().iter().any(|o| vectors[*o]);
            let ok = self.push(op, span);
            let all = if vector {
                let failed = self.push(Op::Not(ok), span);
                let ones = self.push(Op::ToRing(failed), span);
                let count = self.push(Op::Sum(ones), span);
                let zero = self.konst(0, span);
                self.push(Op::Equal(count, zero), span)
            } else {
                ok
            };
            if !checks.iter().any(|c| c.value == all) {
                checks.push(CheckDecl { value: all, span });
            }
        }
        checks
    }

    /// Per node: whether it is a vector, in one pass over the nodes.
    fn vector_nodes(&self) -> Vec<bool> {
        let mut out: Vec<bool> = Vec::with_capacity(self.nodes.len());
        for node in &self.nodes {
            let v = match &node.op {
                Op::Input { input, .. } => self.inputs[*input].shape == InputShape::Vector,
                Op::Const(_) | Op::Len(_) | Op::Bool(_) | Op::Sum(_) | Op::Quantile { .. } => false,
                Op::Min(_) | Op::Max(_) | Op::ArgMin(_) | Op::ArgMax(_) | Op::JoinCount(..) | Op::JoinSum(..) => false,
                Op::Concat(_) | Op::SortBy { .. } | Op::Slice { .. } => true,
                op => op.operands().iter().any(|o| out[*o]),
            };
            out.push(v);
        }
        out
    }

    // ---- order statistics, grouping and joins -------------------------

    /// A vector of numbers (`int` or `fixed`) for `f`.
    fn numbers(&mut self, f: &str, v: &Val, span: Span) -> Result<Operand, CompileError> {
        let o = self.vector(f, v, span)?;
        if o.elem == ElemType::Bool {
            return Err(err(
                span,
                format!("`{f}` expects a vector of numbers, found a bool vector; convert it with `c * 1`"),
            ));
        }
        Ok(o)
    }

    /// A vector of `int` keys for `f`.
    fn keys(&mut self, f: &str, v: &Val, span: Span) -> Result<ValueId, CompileError> {
        let o = self.vector(f, v, span)?;
        if o.elem != ElemType::Int {
            return Err(err(span, format!("`{f}` expects a vector of int keys, found {}", describe(v))));
        }
        Ok(o.id)
    }

    /// The `q`-quantile of a vector of numbers, as `fixed`.
    fn quantile(&mut self, f: &str, span: Span, v: &Val, vs: Span, q: f64) -> Result<Val, CompileError> {
        let v = self.numbers(f, v, vs)?;
        let q = (q * (1u64 << super::ir::QUANTILE_BITS) as f64).round() as u64;
        // Quantiles of one vector (and its `sort`, and `sort_by` on it)
        // share one sort; an `int` vector is scaled to `fixed` after it.
        let sorted = self.push(Op::SortBy { key: v.id, value: v.id, descending: false }, span);
        let sorted = Val::Node { id: sorted, elem: v.elem, shape: Shape::Vector };
        let x = self.operand(&sorted, vs, Some(ElemType::Fixed))?;
        let id = self.push(Op::Quantile { v: x.id, q }, span);
        Ok(Val::Node { id, elem: ElemType::Fixed, shape: Shape::Scalar })
    }

    /// The values of a constant scalar or `[...]` of constants: their
    /// ring encodings as `elem` and the numbers, for bucket edges and
    /// group domains.
    fn constants(&self, v: &Val) -> Option<Vec<Const>> {
        let of_node = |id: ValueId| match self.nodes[id].op {
            Op::Const(_) => Some(id),
            _ => None,
        };
        match v {
            Val::Const(c) => Some(vec![*c]),
            Val::Node { id, elem, .. } => {
                let parts = match &self.nodes[*id].op {
                    Op::Concat(parts) => parts.clone(),
                    Op::Const(_) => vec![*id],
                    _ => return None,
                };
                parts
                    .iter()
                    .map(|p| {
                        let Op::Const(enc) = self.nodes[of_node(*p)?].op else { return None };
                        let signed = crate::ring::to_signed(enc);
                        Some(match elem {
                            ElemType::Fixed => Const::Fixed(signed as f64 / self.scale() as f64),
                            ElemType::Int => Const::Int(signed),
                            ElemType::Bool => Const::Bool(signed != 0),
                        })
                    })
                    .collect()
            }
            Val::List { .. } => None,
        }
    }

    /// The group-by of secret keys of unknown domain, through sorting:
    /// `group_keys(keys)`, `group_count(keys)`, `group_sum(keys, values)`,
    /// `group_mean(keys, values)`, `count_distinct(keys)`. The keys are
    /// sorted (values along), the end of each run of equal keys marked,
    /// the runs totalled by a segmented scan, and the run ends moved to
    /// the front by a stable sort on "not an end" (the other rows zeroed
    /// first): `len(keys)` results, the groups' in ascending key order,
    /// then zeros. All of one program's group-bys on the same keys share
    /// both sorts.
    fn group_by_sorting(&mut self, f: &str, span: Span, args: &[Val], spans: &[Span]) -> Result<Val, CompileError> {
        let keys = self.keys(f, &args[0], spans[0])?;
        let sorted = self.push(Op::SortBy { key: keys, value: keys, descending: false }, span);
        let ends = self.push(Op::RunEnds(sorted), span);
        if f == "count_distinct" {
            let id = self.push(Op::Sum(ends), span);
            return Ok(Val::Node { id, elem: ElemType::Int, shape: Shape::Scalar });
        }
        let one = self.konst(1, span);
        let later = self.push(Op::Sub(one, ends), span);
        let compact = |lw: &mut Lowerer, x: ValueId| {
            let kept = lw.push(Op::Mul(ends, x), span);
            lw.push(Op::SortBy { key: later, value: kept, descending: false }, span)
        };
        // The keys and counts are made together, so that they share one
        // compaction whichever is asked for first.
        let counts = self.push(Op::RunTotals { keys: sorted, values: None }, span);
        let kept_keys = self.push(Op::Mul(ends, sorted), span);
        let kept_counts = self.push(Op::Mul(ends, counts), span);
        let group_keys = self.push(Op::SortBy { key: later, value: kept_keys, descending: false }, span);
        let group_counts = self.push(Op::SortBy { key: later, value: kept_counts, descending: false }, span);
        let (id, elem) = match f {
            "group_keys" => (group_keys, ElemType::Int),
            "group_count" => (group_counts, ElemType::Int),
            _ => {
                let v = self.numbers(f, &args[1], spans[1])?;
                let along = self.push(Op::SortBy { key: keys, value: v.id, descending: false }, span);
                let totals = self.push(Op::RunTotals { keys: sorted, values: Some(along) }, span);
                if f == "group_sum" {
                    (compact(self, totals), v.elem)
                } else {
                    let sum = Val::Node { id: compact(self, totals), elem: v.elem, shape: Shape::Vector };
                    let sum = self.operand(&sum, spans[1], Some(ElemType::Fixed))?;
                    let count = self.mul_const(group_counts, self.scale(), span);
                    (self.push(Op::DivSecret(sum.id, count), span), ElemType::Fixed)
                }
            }
        };
        Ok(Val::Node { id, elem, shape: Shape::Vector })
    }

    /// `histogram(v, edges)`: per bucket `[e_j, e_{j+1})`, how many
    /// elements of `v` fall in it.
    fn histogram(&mut self, span: Span, args: &[Val], spans: &[Span]) -> Result<Val, CompileError> {
        let v = self.numbers("histogram", &args[0], spans[0])?;
        let edges = match self.constants(&args[1]) {
            Some(edges) if edges.len() >= 2 && edges.iter().all(|e| !matches!(e, Const::Bool(_))) => edges,
            _ => {
                return Err(err(
                    spans[1],
                    format!(
                        "`histogram` takes its bucket edges as a list of at least two constants, e.g. [0, 18, 65, 120]; \
                         found {}",
                        describe(&args[1])
                    ),
                ));
            }
        };
        if edges.len() > 1001 {
            return Err(err(spans[1], format!("`histogram` takes at most 1001 edges, found {}", edges.len())));
        }
        if let Some(w) = edges.windows(2).find(|w| w[0].as_f64() >= w[1].as_f64()) {
            return Err(err(
                spans[1],
                format!("`histogram` edges must increase strictly, found {} before {}", w[0].as_f64(), w[1].as_f64()),
            ));
        }
        let fixed = v.elem == ElemType::Fixed || edges.iter().any(|e| matches!(e, Const::Fixed(_)));
        let want = fixed.then_some(ElemType::Fixed);
        let x = self.operand(&self.val(v), spans[0], want)?;
        // below[j] = #{x < e_j}; bucket j = below[j+1] - below[j].
        let mut below = Vec::with_capacity(edges.len());
        for e in &edges {
            let e = self.operand(&Val::Const(*e), spans[1], want)?;
            let lt = self.push(Op::Less(x.id, e.id), span);
            let ones = self.push(Op::ToRing(lt), span);
            below.push(self.push(Op::Sum(ones), span));
        }
        let buckets: Vec<ValueId> = below.windows(2).map(|w| self.push(Op::Sub(w[1], w[0]), span)).collect();
        let id = self.push(Op::Concat(buckets), span);
        Ok(Val::Node { id, elem: ElemType::Int, shape: Shape::Vector })
    }

    /// `group_count(keys, domain)`, `group_sum(keys, values, domain)`,
    /// `group_mean(keys, values, domain)`: one result per category of a
    /// public domain (`K` for 0..K-1, or a list of int constants).
    fn group(&mut self, f: &str, span: Span, args: &[Val], spans: &[Span]) -> Result<Val, CompileError> {
        let want = if f == "group_count" { 2 } else { 3 };
        if args.len() == want - 1 {
            return self.group_by_sorting(f, span, args, spans);
        }
        if args.len() != want {
            let form = if f == "group_count" {
                "group_count(keys) or group_count(keys, domain)"
            } else {
                "group_sum(keys, values) or group_sum(keys, values, domain)"
            };
            return Err(err(
                span,
                format!(
                    "`{f}` takes {} or {want} arguments, found {}: {form}, the domain public (K for the keys \
                     0..K-1, or a list of int constants) or left out (the groups are found by sorting)",
                    want - 1,
                    args.len()
                ),
            ));
        }
        let keys = self.keys(f, &args[0], spans[0])?;
        let ds = spans[want - 1];
        let domain: Vec<i64> = match self.constants(&args[want - 1]).as_deref() {
            Some([Const::Int(k)]) if matches!(args[want - 1], Val::Const(_)) => {
                if !(1..=1000).contains(k) {
                    return Err(err(
                        ds,
                        format!(
                            "`{f}`: the number of categories must be between 1 and 1000, found {k} (each costs a comparison per element)"
                        ),
                    ));
                }
                (0..*k).collect()
            }
            Some(list) if list.len() > 1000 => {
                return Err(err(ds, format!("`{f}`: a domain lists at most 1000 categories, found {}", list.len())));
            }
            Some(list) if list.iter().all(|c| matches!(c, Const::Int(_))) => {
                let ints: Vec<i64> = list.iter().map(|c| if let Const::Int(i) = c { *i } else { 0 }).collect();
                let mut sorted = ints.clone();
                sorted.sort_unstable();
                if sorted.windows(2).any(|w| w[0] == w[1]) {
                    return Err(err(ds, format!("`{f}`: the domain lists a category twice")));
                }
                ints
            }
            _ => {
                return Err(err(
                    ds,
                    format!(
                        "`{f}` takes a public domain: an int constant K (the keys 0..K-1) or a list of int constants, \
                         found {}",
                        describe(&args[want - 1])
                    ),
                ));
            }
        };
        let values = if f == "group_count" { None } else { Some(self.numbers(f, &args[1], spans[1])?) };
        let fixed_values = values.map(|v| self.operand(&self.val(v), spans[1], Some(ElemType::Fixed))).transpose()?;
        let zero = self.konst(0, span);
        let mut results = Vec::with_capacity(domain.len());
        for c in domain {
            let c = self.konst(from_signed(c), ds);
            let hit = self.push(Op::Equal(keys, c), span);
            let count = {
                let ones = self.push(Op::ToRing(hit), span);
                self.push(Op::Sum(ones), span)
            };
            let r = match (f, values, fixed_values) {
                ("group_count", _, _) => count,
                ("group_sum", Some(v), _) => {
                    let picked = self.push(Op::Select(hit, v.id, zero), span);
                    self.push(Op::Sum(picked), span)
                }
                (_, _, Some(x)) => {
                    let picked = self.push(Op::Select(hit, x.id, zero), span);
                    let total = self.push(Op::Sum(picked), span);
                    let count = self.mul_const(count, self.scale(), span);
                    self.push(Op::DivSecret(total, count), span)
                }
                _ => unreachable!("values are present for sums and means"),
            };
            results.push(r);
        }
        let elem = match (f, values) {
            ("group_count", _) => ElemType::Int,
            ("group_sum", Some(v)) => v.elem,
            _ => ElemType::Fixed,
        };
        Ok(Val::Node { id: self.push(Op::Concat(results), span), elem, shape: Shape::Vector })
    }

    // ---- bools and comparisons ---------------------------------------

    fn val(&self, o: Operand) -> Val {
        Val::Node { id: o.id, elem: o.elem, shape: o.shape }
    }

    /// A bool as the int 0 or 1 (`ToRing`); any other value unchanged.
    fn numeric(&mut self, v: Val, span: Span) -> Val {
        match v {
            Val::Const(Const::Bool(b)) => Val::Const(Const::Int(i64::from(b))),
            Val::Node { id, elem: ElemType::Bool, shape } => {
                Val::Node { id: self.push(Op::ToRing(id), span), elem: ElemType::Int, shape }
            }
            Val::List { parts, elem: ElemType::Bool, shape } => {
                let parts = parts.into_iter().map(|p| self.push(Op::ToRing(p), span)).collect();
                Val::List { parts, elem: ElemType::Int, shape }
            }
            other => other,
        }
    }

    /// `v` must be a bool (what: the construct, for the message).
    fn expect_bool(&self, what: &str, v: &Val, span: Span) -> Result<(), CompileError> {
        match v {
            Val::List { .. } => Err(list_misuse(span)),
            v if elem_of(v) == ElemType::Bool => Ok(()),
            v => Err(err(
                span,
                format!("{what} expects a bool, found {}; compare it to get a bool (e.g. `x > 0`)", describe(v)),
            )),
        }
    }

    /// `v` must be a number (`int` or `fixed`) for function `f`.
    fn expect_number(&self, f: &str, v: &Val, span: Span) -> Result<(), CompileError> {
        match v {
            Val::List { .. } => Err(list_misuse(span)),
            v if elem_of(v) == ElemType::Bool => Err(err(
                span,
                format!("`{f}` expects a number (int or fixed), found {}; a bool c is the number `c * 1`", describe(v)),
            )),
            _ => Ok(()),
        }
    }

    /// The two constants as comparable signed encodings (both `int`, or
    /// both encoded as `fixed`): the exact order the circuit computes.
    fn const_order(&self, a: Const, b: Const, span: Span) -> Result<(i64, i64), CompileError> {
        match (a, b) {
            (Const::Int(x), Const::Int(y)) => Ok((x, y)),
            (a, b) => {
                let x = self.encode_const(a, ElemType::Fixed, span)?;
                let y = self.encode_const(b, ElemType::Fixed, span)?;
                Ok((crate::ring::to_signed(x), crate::ring::to_signed(y)))
            }
        }
    }

    fn compare(&mut self, op: BinOp, span: Span, l: &Val, ls: Span, r: &Val, rs: Span) -> Result<Val, CompileError> {
        let (lb, rb) = (elem_of(l) == ElemType::Bool, elem_of(r) == ElemType::Bool);
        if lb && rb {
            // Bools are equal or not; they have no order.
            if !matches!(op, BinOp::Eq | BinOp::NotEq) {
                return Err(err(
                    span,
                    format!(
                        "`{}` compares numbers, found two bools; bools compare only with `==` and `!=`",
                        op.symbol()
                    ),
                ));
            }
            let differ = self.logic(BinOp::Xor, span, l, r);
            return Ok(if op == BinOp::Eq { self.not(&differ, span) } else { differ });
        }
        if lb || rb {
            let (v, s) = if lb { (l, ls) } else { (r, rs) };
            return Err(err(
                s,
                format!(
                    "`{}` cannot compare a bool with a number, found {}; a bool c is the number `c * 1`",
                    op.symbol(),
                    describe(v)
                ),
            ));
        }
        if let (Val::Const(a), Val::Const(b)) = (l, r) {
            let (x, y) = self.const_order(*a, *b, span)?;
            let v = match op {
                BinOp::Less => x < y,
                BinOp::LessEq => x <= y,
                BinOp::Greater => x > y,
                BinOp::GreaterEq => x >= y,
                BinOp::Eq => x == y,
                BinOp::NotEq => x != y,
                other => unreachable!("`{}` is not a comparison", other.symbol()),
            };
            return Ok(Val::Const(Const::Bool(v)));
        }
        let fixed = elem_of(l) == ElemType::Fixed || elem_of(r) == ElemType::Fixed;
        let want = fixed.then_some(ElemType::Fixed);
        let a = self.operand(l, ls, want)?;
        let b = self.operand(r, rs, want)?;
        let id = match op {
            BinOp::Less => self.push(Op::Less(a.id, b.id), span),
            BinOp::Greater => self.push(Op::Less(b.id, a.id), span),
            BinOp::LessEq => {
                let gt = self.push(Op::Less(b.id, a.id), span);
                self.not_node(gt, span)
            }
            BinOp::GreaterEq => {
                let lt = self.push(Op::Less(a.id, b.id), span);
                self.not_node(lt, span)
            }
            BinOp::Eq => self.push(Op::Equal(a.id, b.id), span),
            BinOp::NotEq => {
                let eq = self.push(Op::Equal(a.id, b.id), span);
                self.not_node(eq, span)
            }
            other => unreachable!("`{}` is not a comparison", other.symbol()),
        };
        Ok(Val::Node { id, elem: ElemType::Bool, shape: join(a.shape, b.shape) })
    }

    /// `Not`, cancelling a double negation.
    fn not_node(&mut self, id: ValueId, span: Span) -> ValueId {
        match self.nodes[id].op {
            Op::Not(inner) => inner,
            _ => self.push(Op::Not(id), span),
        }
    }

    /// `not v` of a checked bool.
    fn not(&mut self, v: &Val, span: Span) -> Val {
        match v {
            Val::Const(Const::Bool(b)) => Val::Const(Const::Bool(!b)),
            Val::Node { id, shape, .. } => {
                Val::Node { id: self.not_node(*id, span), elem: ElemType::Bool, shape: *shape }
            }
            _ => unreachable!("checked to be a bool"),
        }
    }

    /// `and`, `or`, `xor` of two checked bools. Constants fold; a constant
    /// operand that leaves the other unchanged (or negated) is dropped.
    fn logic(&mut self, op: BinOp, span: Span, l: &Val, r: &Val) -> Val {
        let apply = |a: bool, b: bool| match op {
            BinOp::And => a & b,
            BinOp::Or => a | b,
            _ => a ^ b,
        };
        match (l, r) {
            (Val::Const(Const::Bool(a)), Val::Const(Const::Bool(b))) => return Val::Const(Const::Bool(apply(*a, *b))),
            (Val::Const(Const::Bool(k)), x @ Val::Node { .. }) | (x @ Val::Node { .. }, Val::Const(Const::Bool(k))) => {
                match (op, *k) {
                    (BinOp::And, true) | (BinOp::Or | BinOp::Xor, false) => return x.clone(),
                    (BinOp::Xor, true) => return self.not(x, span),
                    _ => {}
                }
            }
            _ => {}
        }
        let (a, b) = (self.bool_operand(l, span), self.bool_operand(r, span));
        let node = match op {
            BinOp::And => Op::And(a.0, b.0),
            BinOp::Or => Op::Or(a.0, b.0),
            _ => Op::Xor(a.0, b.0),
        };
        Val::Node { id: self.push(node, span), elem: ElemType::Bool, shape: join(a.1, b.1) }
    }

    /// A checked bool as a node.
    fn bool_operand(&mut self, v: &Val, span: Span) -> (ValueId, Shape) {
        match v {
            Val::Const(Const::Bool(b)) => (self.push(Op::Bool(*b), span), Shape::Scalar),
            Val::Node { id, shape, .. } => (*id, *shape),
            _ => unreachable!("checked to be a bool"),
        }
    }

    /// A product with a bool operand: `c * x` keeps `x` where `c` is true
    /// (`Select(c, x, 0)`, one selection instead of a conversion and a
    /// multiplication); with a constant or a bool the bool is the int 0/1.
    fn mul_bool(&mut self, span: Span, l: &Val, ls: Span, r: &Val, rs: Span) -> Result<Val, CompileError> {
        let (lb, rb) = (elem_of(l) == ElemType::Bool, elem_of(r) == ElemType::Bool);
        if lb && rb {
            if let (Val::Const(_), Val::Const(_)) = (l, r) {
                let (a, b) = (self.numeric(l.clone(), ls), self.numeric(r.clone(), rs));
                return self.binary(BinOp::Mul, span, &a, ls, &b, rs);
            }
            // 0/1 times 0/1: the conjunction, as an int.
            let both = self.logic(BinOp::And, span, l, r);
            return Ok(self.numeric(both, span));
        }
        let ((c, cs), (x, xs)) = if lb { ((l, ls), (r, rs)) } else { ((r, rs), (l, ls)) };
        match (c, x) {
            (Val::Node { id: c_id, shape: c_shape, .. }, Val::Node { .. }) => {
                let x = self.operand(x, xs, None)?;
                let zero = self.konst(0, span);
                let id = self.push(Op::Select(*c_id, x.id, zero), span);
                Ok(Val::Node { id, elem: x.elem, shape: join(*c_shape, x.shape) })
            }
            _ => {
                let c = self.numeric(c.clone(), cs);
                if lb {
                    self.binary(BinOp::Mul, span, &c, cs, x, xs)
                } else {
                    self.binary(BinOp::Mul, span, x, xs, &c, cs)
                }
            }
        }
    }

    /// `select(c, a, b)`: elementwise `c ? a : b`. Numbers (mixed gives
    /// `fixed`) lower to `Select`; two bools to `b xor (c and (a xor b))`.
    fn select(&mut self, f: &str, span: Span, args: &[Val], spans: &[Span]) -> Result<Val, CompileError> {
        let (c, a, b) = (&args[0], &args[1], &args[2]);
        self.expect_bool("`select`'s condition (its first argument)", c, spans[0])?;
        for (v, s) in [(a, spans[1]), (b, spans[2])] {
            if let Val::List { .. } = v {
                return Err(list_misuse(s));
            }
        }
        let shape = join(join(shape_of(c), shape_of(a)), shape_of(b));
        let (ab, bb) = (elem_of(a) == ElemType::Bool, elem_of(b) == ElemType::Bool);
        if ab != bb {
            // Point at the bool: the odd one out in a numeric selection.
            let s = if ab { spans[1] } else { spans[2] };
            return Err(err(
                s,
                format!(
                    "`{f}` needs two numbers or two bools as its choices, found {} and {}; a bool c is the number \
                     `c * 1`",
                    describe(a),
                    describe(b)
                ),
            ));
        }
        // A constant condition picks a branch, when that keeps the shape.
        if let Val::Const(Const::Bool(k)) = c {
            let chosen = if *k { a } else { b };
            if shape_of(chosen) == shape {
                let fixed = elem_of(a) == ElemType::Fixed || elem_of(b) == ElemType::Fixed;
                return Ok(match chosen {
                    Val::Const(Const::Int(i)) if fixed => Val::Const(Const::Fixed(*i as f64)),
                    Val::Node { .. } if fixed => {
                        let o = self.operand(chosen, if *k { spans[1] } else { spans[2] }, Some(ElemType::Fixed))?;
                        self.val(o)
                    }
                    other => other.clone(),
                });
            }
        }
        let (c_id, _) = self.bool_operand(c, spans[0]);
        if ab {
            let (a_id, _) = self.bool_operand(a, spans[1]);
            let (b_id, _) = self.bool_operand(b, spans[2]);
            let differ = self.push(Op::Xor(a_id, b_id), span);
            let pick = self.push(Op::And(c_id, differ), span);
            return Ok(Val::Node { id: self.push(Op::Xor(b_id, pick), span), elem: ElemType::Bool, shape });
        }
        let fixed = elem_of(a) == ElemType::Fixed || elem_of(b) == ElemType::Fixed;
        let want = fixed.then_some(ElemType::Fixed);
        let x = self.operand(a, spans[1], want)?;
        let y = self.operand(b, spans[2], want)?;
        Ok(Val::Node { id: self.push(Op::Select(c_id, x.id, y.id), span), elem: x.elem, shape })
    }

    /// `min`/`max`: of one vector (`Min`/`Max`, a scalar), or elementwise
    /// of two or more values (`Select(Less(a, b), a, b)` in a balanced tree).
    fn min_max(&mut self, f: &str, span: Span, args: &[Val], spans: &[Span]) -> Result<Val, CompileError> {
        let is_min = f == "min";
        match args.len() {
            0 => Err(err(span, format!("`{f}` takes a vector or at least 2 values, found no arguments"))),
            1 => {
                let v = self.vector(f, &args[0], spans[0]).map_err(|e| CompileError {
                    message: format!("{}; or give it two or more values: `{f}(a, b)`", e.message),
                    ..e
                })?;
                if v.elem == ElemType::Bool {
                    return Err(err(spans[0], format!("`{f}` expects a vector of numbers, found a bool vector")));
                }
                let op = if is_min { Op::Min(v.id) } else { Op::Max(v.id) };
                Ok(Val::Node { id: self.push(op, span), elem: v.elem, shape: Shape::Scalar })
            }
            _ => {
                for (a, s) in args.iter().zip(spans) {
                    self.expect_number(f, a, *s)?;
                }
                let fixed = args.iter().any(|a| elem_of(a) == ElemType::Fixed);
                if let Some(consts) =
                    args.iter().map(|a| if let Val::Const(c) = a { Some(*c) } else { None }).collect::<Option<Vec<_>>>()
                {
                    let mut best = consts[0];
                    for &c in &consts[1..] {
                        let (x, y) = self.const_order(c, best, span)?;
                        if (is_min && x < y) || (!is_min && x > y) {
                            best = c;
                        }
                    }
                    return Ok(Val::Const(match best {
                        Const::Int(i) if fixed => Const::Fixed(i as f64),
                        other => other,
                    }));
                }
                let want = fixed.then_some(ElemType::Fixed);
                let mut level = Vec::new();
                for (a, s) in args.iter().zip(spans) {
                    level.push(self.operand(a, *s, want)?);
                }
                // A balanced tree: ceil(log2 n) comparison levels.
                while level.len() > 1 {
                    let mut next = Vec::new();
                    for pair in level.chunks(2) {
                        if let [a, b] = pair {
                            let lt = self.push(Op::Less(a.id, b.id), span);
                            let (yes, no) = if is_min { (a.id, b.id) } else { (b.id, a.id) };
                            let id = self.push(Op::Select(lt, yes, no), span);
                            next.push(Operand { id, elem: a.elem, shape: join(a.shape, b.shape) });
                        } else {
                            next.push(pair[0]);
                        }
                    }
                    level = next;
                }
                Ok(self.val(level[0]))
            }
        }
    }

    /// `clamp(x, lo, hi)` = `x + select(x < lo, lo - x, 0) + select(hi < x,
    /// hi - x, 0)`: both comparisons and both selections in parallel
    /// (8 rounds, against 9 for nested selections). With `lo > hi` (only
    /// possible at run time: constant bounds are checked here) a value
    /// between them gets both corrections, `lo + hi - x`; see
    /// docs/language.md.
    fn clamp(&mut self, span: Span, args: &[Val], spans: &[Span]) -> Result<Val, CompileError> {
        for (a, s) in args.iter().zip(spans) {
            self.expect_number("clamp", a, *s)?;
        }
        let (x, lo, hi) = (&args[0], &args[1], &args[2]);
        if let (Val::Const(l), Val::Const(h)) = (lo, hi) {
            let (l, h) = self.const_order(*l, *h, span)?;
            if l > h {
                return Err(err(spans[1], "`clamp`'s lower bound is above its upper bound"));
            }
        }
        if let (Val::Const(_), Val::Const(_), Val::Const(_)) = (x, lo, hi) {
            let low = self.min_max("max", span, &[x.clone(), lo.clone()], &spans[..2])?;
            return self.min_max("min", span, &[low, hi.clone()], &[span, spans[2]]);
        }
        let fixed = args.iter().any(|a| elem_of(a) == ElemType::Fixed);
        let want = fixed.then_some(ElemType::Fixed);
        let x = self.operand(x, spans[0], want)?;
        let lo = self.operand(lo, spans[1], want)?;
        let hi = self.operand(hi, spans[2], want)?;
        let elem = if fixed { ElemType::Fixed } else { ElemType::Int };
        let zero = self.konst(0, span);
        let below = self.push(Op::Less(x.id, lo.id), span);
        let above = self.push(Op::Less(hi.id, x.id), span);
        let up = self.push(Op::Sub(lo.id, x.id), span);
        let down = self.push(Op::Sub(hi.id, x.id), span);
        let up = self.push(Op::Select(below, up, zero), span);
        let down = self.push(Op::Select(above, down, zero), span);
        let id = self.push(Op::Add(x.id, up), span);
        let id = self.push(Op::Add(id, down), span);
        Ok(Val::Node { id, elem, shape: join(join(x.shape, lo.shape), hi.shape) })
    }
}

fn shape_of(v: &Val) -> Shape {
    match v {
        Val::Const(_) => Shape::Scalar,
        Val::Node { shape, .. } | Val::List { shape, .. } => *shape,
    }
}

fn elem_of(v: &Val) -> ElemType {
    match v {
        Val::Const(Const::Int(_)) => ElemType::Int,
        Val::Const(Const::Fixed(_)) => ElemType::Fixed,
        Val::Const(Const::Bool(_)) => ElemType::Bool,
        Val::Node { elem, .. } | Val::List { elem, .. } => *elem,
    }
}

fn join(a: Shape, b: Shape) -> Shape {
    if a == Shape::Vector || b == Shape::Vector { Shape::Vector } else { Shape::Scalar }
}

fn list_misuse(span: Span) -> CompileError {
    err(span, "a per-party list (an input `from each`) cannot be used here; use concat(x), aggregate(x) or x[PARTY]")
}
