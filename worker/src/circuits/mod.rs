//! Circuits written once against the primitives every protocol provides.
//!
//! A protocol (today `additive-semi-honest`; next the replicated
//! three-party protocol) gives secret values two forms — arithmetic shares
//! over Z_2^64 and bit-sliced XOR shares over GF(2) — and a few primitives
//! on them. The circuits in this module (comparison, equality, and the
//! select, min/max, sorting and grouping built on them) are generic over
//! [`BinaryOps`], the binary half of those primitives, so that they run
//! unchanged under every protocol and in plaintext:
//!
//! - [`Plain`] evaluates a circuit on clear bits: the reference semantics
//!   the protocols are tested against;
//! - [`Cost`] evaluates it on shapes only and counts what a protocol pays:
//!   AND layers (each one communication round) and AND gates (each one bit
//!   triple, or one replicated AND);
//! - a protocol's evaluator issues the same calls on shares.
//!
//! XOR and NOT are local in every XOR-based sharing; AND is the one
//! interactive gate. Circuits therefore minimise AND *depth* first (rounds)
//! and AND *count* second (material, bytes), and batch the ANDs of one
//! level into one call so that an evaluator opens them in one round.

pub mod compare;
pub mod fixed_point;

use crate::gf2::Bits;

/// The binary primitives a circuit is written against. Bundles
/// ([`Bits`]-shaped: `width` bit-planes over the same elements) are
/// opaque handles: clear bits, shares, or only shapes.
pub trait BinaryOps {
    type Bits: Clone;

    /// Number of planes of `a`.
    fn width(&self, a: &Self::Bits) -> usize;
    /// `a ^ b` (local).
    fn xor(&mut self, a: &Self::Bits, b: &Self::Bits) -> Self::Bits;
    /// `!a` (local).
    fn not(&mut self, a: &Self::Bits) -> Self::Bits;
    /// `a & b`, plane by plane: the interactive gate, one round for every
    /// AND of one circuit level.
    fn and(&mut self, a: &Self::Bits, b: &Self::Bits) -> Self::Bits;
    /// The planes of `a` at `indices`, in that order (local).
    fn gather(&mut self, a: &Self::Bits, indices: &[usize]) -> Self::Bits;
    /// The planes of every part, in order (local).
    fn concat(&mut self, parts: &[&Self::Bits]) -> Self::Bits;
}

/// Evaluates circuits on clear bits.
#[derive(Debug, Default)]
pub struct Plain;

impl BinaryOps for Plain {
    type Bits = Bits;

    fn width(&self, a: &Bits) -> usize {
        a.width()
    }

    fn xor(&mut self, a: &Bits, b: &Bits) -> Bits {
        let mut out = a.clone();
        out.xor_assign(b);
        out
    }

    fn not(&mut self, a: &Bits) -> Bits {
        let mut out = a.clone();
        out.not_assign();
        out
    }

    fn and(&mut self, a: &Bits, b: &Bits) -> Bits {
        let mut out = a.clone();
        out.and_assign(b);
        out
    }

    fn gather(&mut self, a: &Bits, indices: &[usize]) -> Bits {
        a.gather(indices)
    }

    fn concat(&mut self, parts: &[&Bits]) -> Bits {
        Bits::concat(parts)
    }
}

/// The shape of a bundle in a [`Cost`] evaluation: its width, whether it
/// is public (known to every party, so ANDs with it are local), and the
/// AND depth at which it is available.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub width: usize,
    pub public: bool,
    pub depth: usize,
}

impl Shape {
    /// A secret bundle available before any AND.
    pub fn secret(width: usize) -> Shape {
        Shape { width, public: false, depth: 0 }
    }

    /// A public bundle.
    pub fn public(width: usize) -> Shape {
        Shape { width, public: true, depth: 0 }
    }
}

/// Evaluates circuits on shapes and counts their cost per element.
#[derive(Debug, Default)]
pub struct Cost {
    /// AND gates between two secret bundles, per element: one bit triple
    /// each under the additive protocol.
    pub and_gates: usize,
    /// Calls of [`BinaryOps::and`] on secret bundles (an evaluator that
    /// does not batch would pay one opening each).
    pub and_calls: usize,
}

impl BinaryOps for Cost {
    type Bits = Shape;

    fn width(&self, a: &Shape) -> usize {
        a.width
    }

    fn xor(&mut self, a: &Shape, b: &Shape) -> Shape {
        assert_eq!(a.width, b.width, "xor of {} and {} planes", a.width, b.width);
        Shape { width: a.width, public: a.public && b.public, depth: a.depth.max(b.depth) }
    }

    fn not(&mut self, a: &Shape) -> Shape {
        *a
    }

    fn and(&mut self, a: &Shape, b: &Shape) -> Shape {
        assert_eq!(a.width, b.width, "and of {} and {} planes", a.width, b.width);
        let depth = a.depth.max(b.depth);
        if a.public || b.public {
            return Shape { width: a.width, public: a.public && b.public, depth };
        }
        self.and_gates += a.width;
        self.and_calls += 1;
        Shape { width: a.width, public: false, depth: depth + 1 }
    }

    fn gather(&mut self, a: &Shape, indices: &[usize]) -> Shape {
        assert!(indices.iter().all(|&j| j < a.width), "gathering planes beyond {}", a.width);
        Shape { width: indices.len(), ..*a }
    }

    fn concat(&mut self, parts: &[&Shape]) -> Shape {
        Shape {
            width: parts.iter().map(|p| p.width).sum(),
            public: parts.iter().all(|p| p.public),
            depth: parts.iter().map(|p| p.depth).max().unwrap_or(0),
        }
    }
}
