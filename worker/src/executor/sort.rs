//! Sorting secret vectors: [`Netlist::sort`].
//!
//! Placeholder construction: odd-even transposition (a stable network of
//! `n` rounds of adjacent compare-exchanges, each swapping only a strictly
//! out-of-order pair). Correct under every protocol; its depth is linear
//! in `n`.

use super::netlist::{GateId, GateOp, Kind, Netlist};
use super::plan::PlanError;
use crate::program::ir::Span;

impl Netlist {
    /// Sort `columns` (ring vectors, each as long as `key`) by the signed
    /// order of `key`, ascending or `descending`, stable: one sorted gate
    /// per column, in order.
    pub fn sort(
        &mut self,
        key: GateId,
        columns: &[GateId],
        descending: bool,
        span: Span,
    ) -> Result<Vec<GateId>, PlanError> {
        let n = self.gate(key).width();
        for c in columns {
            self.elementwise(key, *c, span, "sort_by")?;
        }
        let mut key = key;
        let mut columns = columns.to_vec();
        for round in 0..n {
            let start = round % 2;
            let pairs = (n - start) / 2;
            if pairs == 0 {
                continue;
            }
            let take = |net: &mut Netlist, a: GateId, from: usize, count: usize, step: usize| {
                net.push(GateOp::Strided { a, start: from, step, count }, span, Some(count), Kind::Ring)
            };
            let lo_k = take(self, key, start, pairs, 2);
            let hi_k = take(self, key, start + 1, pairs, 2);
            // Swap when the lower element must come after the upper one.
            let diff = if descending {
                self.ring2(GateOp::Sub, lo_k, hi_k, span)
            } else {
                self.ring2(GateOp::Sub, hi_k, lo_k, span)
            };
            let swap = self.sign(diff, span);
            let reorder = |net: &mut Netlist, v: GateId| -> Result<GateId, PlanError> {
                let lo = take(net, v, start, pairs, 2);
                let hi = take(net, v, start + 1, pairs, 2);
                let new_lo = net.select(swap, hi, lo, span)?;
                let both = net_sum(net, lo, hi, span);
                let new_hi = net.ring2(GateOp::Sub, both, new_lo, span);
                // Interleave back, with the untouched ends.
                let mut parts = Vec::new();
                if start == 1 {
                    parts.push(take(net, v, 0, 1, 1));
                }
                let pairs_vec = interleave(net, new_lo, new_hi, pairs, span);
                parts.push(pairs_vec);
                let end = start + 2 * pairs;
                if end < n {
                    parts.push(take(net, v, end, n - end, 1));
                }
                Ok(net.push(GateOp::Concat(parts), span, Some(n), Kind::Ring))
            };
            key = reorder(self, key)?;
            for c in columns.iter_mut() {
                *c = reorder(self, *c)?;
            }
        }
        Ok(columns)
    }
}

fn net_sum(net: &mut Netlist, a: GateId, b: GateId, span: Span) -> GateId {
    net.ring2(GateOp::Add, a, b, span)
}

/// `[a0, b0, a1, b1, …]` of two vectors of `pairs` elements.
fn interleave(net: &mut Netlist, a: GateId, b: GateId, pairs: usize, span: Span) -> GateId {
    let mut parts = Vec::with_capacity(2 * pairs);
    for i in 0..pairs {
        for v in [a, b] {
            parts.push(net.push(GateOp::Strided { a: v, start: i, step: 1, count: 1 }, span, Some(1), Kind::Ring));
        }
    }
    net.push(GateOp::Concat(parts), span, Some(2 * pairs), Kind::Ring)
}
