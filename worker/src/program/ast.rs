//! The syntax tree produced by the parser and consumed by the checker.
//!
//! Every node keeps the [`Span`] (1-based line and column) where it starts,
//! so that every later error can point at the source.

use super::ir::{ElemType, InputShape, Span};

/// A whole program.
#[derive(Clone, Debug, PartialEq)]
pub struct Program {
    /// `fixed_point N`, if present (the value and where it is written).
    pub frac_bits: Option<(u32, Span)>,
    /// `range_check`, if present (where it is written).
    pub range_check: Option<Span>,
    pub stmts: Vec<Stmt>,
}

/// A name and where it is written.
#[derive(Clone, Debug, PartialEq)]
pub struct Name {
    pub text: String,
    pub span: Span,
}

/// Who provides an input.
#[derive(Clone, Debug, PartialEq)]
pub enum OwnerSpec {
    /// `from each`: every party contributes.
    Each,
    /// `from <party>`.
    Party(Name),
}

/// Who receives an output.
#[derive(Clone, Debug, PartialEq)]
pub enum Recipients {
    /// No `to` clause, or `to all`.
    All,
    /// `to p1, p2, ...`.
    Parties(Vec<Name>),
}

/// A statement.
#[derive(Clone, Debug, PartialEq)]
pub enum Stmt {
    /// `input NAME: TYPE from OWNER`.
    Input { name: Name, elem: ElemType, shape: InputShape, owners: OwnerSpec, span: Span },
    /// `let NAME = EXPR`.
    Let { name: Name, value: Expr, span: Span },
    /// `output NAME = EXPR [to RECIPIENTS]`.
    Output { name: Name, value: Expr, to: Recipients, span: Span },
}

/// A binary operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    /// `<`
    Less,
    /// `<=`
    LessEq,
    /// `>`
    Greater,
    /// `>=`
    GreaterEq,
    /// `==`
    Eq,
    /// `!=`
    NotEq,
    And,
    Or,
    Xor,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Less => "<",
            BinOp::LessEq => "<=",
            BinOp::Greater => ">",
            BinOp::GreaterEq => ">=",
            BinOp::Eq => "==",
            BinOp::NotEq => "!=",
            BinOp::And => "and",
            BinOp::Or => "or",
            BinOp::Xor => "xor",
        }
    }

    /// `< <= > >= == !=`.
    pub fn is_comparison(self) -> bool {
        matches!(self, BinOp::Less | BinOp::LessEq | BinOp::Greater | BinOp::GreaterEq | BinOp::Eq | BinOp::NotEq)
    }

    /// `and or xor`.
    pub fn is_logic(self) -> bool {
        matches!(self, BinOp::And | BinOp::Or | BinOp::Xor)
    }
}

/// An expression; `span` is where it starts.
#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    /// An integer literal (non-negative; `-` is a unary operator).
    Int(i64),
    /// A fixed-point literal.
    Float(f64),
    /// `true` or `false`.
    Bool(bool),
    /// A variable (an input, `let` or `output` name).
    Var(String),
    /// `-e`.
    Neg(Box<Expr>),
    /// `not e`.
    Not(Box<Expr>),
    /// `l op r`; `op_span` is the operator's position.
    Binary { op: BinOp, op_span: Span, lhs: Box<Expr>, rhs: Box<Expr> },
    /// `name(args)`.
    Call { name: Name, args: Vec<Expr> },
    /// `list[party]`: one party's element of a per-party list.
    Index { base: Box<Expr>, party: Name },
    /// `[e1, e2, ...]`: a vector of scalars.
    Vector(Vec<Expr>),
}
