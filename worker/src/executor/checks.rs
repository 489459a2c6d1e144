//! Range checks (`range_check`): the circuits behind [`Op::InRange`] and
//! [`Op::ProductFits`](crate::program::ir::Op::ProductFits).
//!
//! A check is a secret bool per element; the compiler reduces each to one
//! bool (all elements in range) and the executor reveals those to every
//! party before any output. Only that bit is revealed: a passing check
//! says the values were in range, which the program's contract promised.
//!
//! [`Op::InRange`]: crate::program::ir::Op::InRange

use super::netlist::{GateId, GateOp, Kind, Netlist, PublicValue, Recorder};
use super::plan::PlanError;
use crate::circuits::BinaryOps;
use crate::circuits::fixed_point::{sub, suffix_and};
use crate::fixed::SAFE_BOUND;
use crate::program::ir::Span;
use crate::ring;

impl Netlist {
    /// `[-2^62 <= x < 2^62]`: `x + 2^62` has a clear sign bit (one
    /// comparison's circuit).
    pub fn in_range(&mut self, x: GateId, span: Span) -> GateId {
        let len = self.gate(x).len;
        let shift = self.constant(SAFE_BOUND, span);
        let shifted = self.push(GateOp::Add(x, shift), span, len, Kind::Ring);
        let negative = self.sign(shifted, span);
        self.push(GateOp::Not(negative), span, len, Kind::Bits(1))
    }

    /// Whether `a·b` fits the range (see `Op::ProductFits`). With a public
    /// operand `k` (its plan-time value): `|x| <= B = ⌊(2^62 - 1)/|k|⌋`,
    /// two comparisons. With two secrets: the bit-length rule, in binary:
    /// the planes of each operand (a full subtractor), their magnitude
    /// bits `m = x xor sign`, the suffix OR `P[i] = [bits(x) > i]`, and the
    /// rule fails exactly when some `P_a[i] ∧ P_b[60 - i]`, `-1 <= i <= 61`
    /// with `P[-1] = 1` (`i < bits(a)` and `60 - i < bits(b)` for some such
    /// `i` exactly when the bits sum to 62 or more).
    pub fn product_fits(
        &mut self,
        a: GateId,
        b: GateId,
        public_a: Option<&[u64]>,
        public_b: Option<&[u64]>,
        span: Span,
    ) -> Result<GateId, PlanError> {
        let len = self.elementwise(a, b, span, "a range check")?;
        match (public_a, public_b) {
            (Some(k), None) => Ok(self.bounded_product(b, k, len, span)),
            (None, Some(k)) => Ok(self.bounded_product(a, k, len, span)),
            _ => {
                let (pa, pb) = (self.magnitude_prefix(a, span), self.magnitude_prefix(b, span));
                let mut ops = Recorder { net: self, span };
                let low = ops.gather(&pa, &(0..61).collect::<Vec<_>>());
                let high = ops.gather(&pb, &(0..61).rev().collect::<Vec<_>>());
                let both = ops.and(&low, &high);
                // i = 61 and i = -1 (where P[-1] = 1): bits(a) >= 62 or
                // bits(b) >= 62 alone refuses, whatever the other.
                let (top_a, top_b) = (ops.gather(&pa, &[61]), ops.gather(&pb, &[61]));
                let witnesses = ops.concat(&[&both, &top_a, &top_b]);
                let clear = ops.not(&witnesses);
                let all_clear = suffix_and(&mut ops, &clear);
                Ok(ops.gather(&all_clear, &[0]))
            }
        }
    }

    /// `P[i] = [bits(x) > i]` for `i < 63`, as 63 planes.
    fn magnitude_prefix(&mut self, x: GateId, span: Span) -> GateId {
        let (c, r) = self.in_binary(x, span);
        let mut ops = Recorder { net: self, span };
        let planes = sub(&mut ops, &c, &r);
        let low = ops.gather(&planes, &(0..63).collect::<Vec<_>>());
        let sign = ops.gather(&planes, &[63; 63]);
        let magnitude = ops.xor(&low, &sign);
        let zero = ops.not(&magnitude);
        let none_above = suffix_and(&mut ops, &zero);
        ops.not(&none_above)
    }

    /// `|x·k| < 2^62` for a public `k` (a scalar or one per element).
    fn bounded_product(&mut self, x: GateId, k: &[u64], len: Option<usize>, span: Span) -> GateId {
        let bounds: Vec<u64> = k
            .iter()
            .map(|k| match ring::to_signed(*k).unsigned_abs() {
                0 => SAFE_BOUND,
                k => (SAFE_BOUND - 1) / k,
            })
            .collect();
        let shape = (bounds.len() != 1).then_some(bounds.len());
        let bound = self.push(GateOp::Public(PublicValue::Ring(bounds)), span, shape, Kind::Ring);
        // x >= -B: the sign of x + B is clear; x <= B: the sign of B - x is.
        let above = self.push(GateOp::Add(x, bound), span, len, Kind::Ring);
        let below = self.push(GateOp::Sub(bound, x), span, len, Kind::Ring);
        let (low, high) = (self.sign(above, span), self.sign(below, span));
        let (low_ok, high_ok) = (
            self.push(GateOp::Not(low), span, len, Kind::Bits(1)),
            self.push(GateOp::Not(high), span, len, Kind::Bits(1)),
        );
        self.push(GateOp::And(low_ok, high_ok), span, len, Kind::Bits(1))
    }
}
