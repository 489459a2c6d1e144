//! Order statistics and joins, built on [`Netlist::sort`]:
//! [`Netlist::quantile`] and [`Netlist::join`], and the segmented scan
//! they need ([`Netlist::propagate`]).
//!
//! Every construction here is a composition of the netlist's primitives
//! (sorting, comparisons, selections, public reindexing), so it runs under
//! every protocol and reveals nothing but its output.

use super::netlist::{GateId, GateOp, Kind, Netlist, PublicValue};
use super::plan::PlanError;
use crate::program::ir::Span;

impl Netlist {
    /// Elements `start, …, start + count - 1` of a ring vector.
    fn range(&mut self, v: GateId, start: usize, count: usize, span: Span) -> GateId {
        self.push(GateOp::Strided { a: v, start, step: 1, count }, span, Some(count), Kind::Ring)
    }

    /// Element `i` of a ring vector, as a scalar.
    fn element(&mut self, v: GateId, i: usize, span: Span) -> GateId {
        let one = self.range(v, i, 1, span);
        let zero = self.constant(0, span);
        self.push(GateOp::Add(one, zero), span, None, Kind::Ring)
    }

    /// The `q`-quantile (`q` in units of `2^-q_bits`) of a fixed-point
    /// vector sorted ascending
    /// (`Op::Quantile`): pick the two closest ranks (public positions), interpolate with the
    /// public fraction. With `h = (n - 1)·q` on the grid, `s[⌊h⌋]` exactly
    /// when `h` is whole, else `s[⌊h⌋] + trunc((s[⌊h⌋+1] - s[⌊h⌋])·frac)`:
    /// one truncation (error at most one unit in the last place). The
    /// fraction is reduced to `a/2^b` first, so the product is `a` times
    /// the gap (once the gap itself for a median).
    pub fn quantile(&mut self, v: GateId, q: u64, q_bits: u32, span: Span) -> Result<GateId, PlanError> {
        let n = self.gate(v).width();
        if n == 0 {
            return Err(PlanError { span, reason: "`quantile` of an empty vector".into() });
        }
        let h = (n as u128 - 1) * u128::from(q);
        let lo = ((h >> q_bits) as usize).min(n - 1);
        let frac = if lo == n - 1 { 0 } else { (h & ((1u128 << q_bits) - 1)) as u64 };
        // `v` is sorted already (see `Op::Quantile`).
        let sorted = v;
        let low = self.element(sorted, lo, span);
        if frac == 0 {
            return Ok(low);
        }
        let high = self.element(sorted, lo + 1, span);
        let step = self.ring2(GateOp::Sub, high, low, span);
        // The fraction in lowest terms, a/2^b: the product a·step stays
        // small (the median's is the step itself, halved).
        let shift = frac.trailing_zeros();
        let weight = self.constant(frac >> shift, span);
        let scaled = self.ring2(GateOp::Mul, step, weight, span);
        let scale = self.constant(1u64 << (q_bits - shift), span);
        let interpolated = self.divide(scaled, scale, span)?;
        Ok(self.ring2(GateOp::Add, low, interpolated, span))
    }

    /// Divide a ring value by a public positive scalar gate.
    fn divide(&mut self, x: GateId, divisor: GateId, span: Span) -> Result<GateId, PlanError> {
        let d = match &self.gate(divisor).op {
            GateOp::Public(PublicValue::Ring(v)) if v.len() == 1 => v[0],
            _ => return Err(PlanError { span, reason: "internal: a divisor must be a public scalar".into() }),
        };
        let division = self
            .lowering
            .division(d)
            .ok_or_else(|| PlanError { span, reason: format!("internal: no division by {d}") })?;
        let len = self.gate(x).len;
        Ok(self.push(GateOp::Div(x, division), span, len, Kind::Ring))
    }

    /// `join_count(a, b)` (`values` absent) or `join_sum(a, b, values)`.
    ///
    /// The rows of both tables are sorted together by key, stably, table
    /// `a` first, so that within a run of equal keys the rows of `a` come
    /// before those of `b`. A run *has a match* when its first row is from
    /// `a` and some row from `b`; [`Netlist::propagate`] carries "the run's
    /// first row is from `a`" to every row of the run (`⌈log2 N⌉` rounds).
    /// Then `join_sum = Σ has·v` over the rows (`v` is 0 on `a`'s rows), and
    /// `join_count = Σ has·[from b]·[last row of its run]`: a run with rows
    /// from `b` ends with one of them.
    pub fn join(&mut self, a: GateId, b: GateId, values: Option<GateId>, span: Span) -> Result<GateId, PlanError> {
        let (na, nb) = (self.gate(a).width(), self.gate(b).width());
        if let Some(v) = values
            && self.gate(v).width() != nb
        {
            return Err(PlanError {
                span,
                reason: format!("join_sum of keys and values of different lengths ({nb} and {})", self.gate(v).width()),
            });
        }
        let n = na + nb;
        if na == 0 || nb == 0 {
            return Ok(self.constant(0, span));
        }
        let keys = self.push(GateOp::Concat(vec![a, b]), span, Some(n), Kind::Ring);
        // Which table a row is from, and its value: public patterns, made
        // secret (by a zero product with the keys) so the sort moves them
        // like every other column.
        let secret = |net: &mut Netlist, pattern: Vec<u64>| {
            let zero = net.constant(0, span);
            let hidden = net.ring2(GateOp::Mul, keys, zero, span);
            let p = net.push(GateOp::Public(PublicValue::Ring(pattern)), span, Some(n), Kind::Ring);
            net.ring2(GateOp::Add, hidden, p, span)
        };
        let from_a = secret(self, (0..n).map(|i| u64::from(i < na)).collect());
        let mut columns = vec![keys, from_a];
        if let Some(v) = values {
            let zeros = self.push(GateOp::Public(PublicValue::Ring(vec![0; na])), span, Some(na), Kind::Ring);
            columns.push(self.push(GateOp::Concat(vec![zeros, v]), span, Some(n), Kind::Ring));
        }
        let sorted = self.sort(keys, &columns, false, span)?;
        let (keys, from_a) = (sorted[0], sorted[1]);
        // starts[p]: row p begins a run (p = 0, or its key differs from
        // the previous row's).
        let differs = self.differs_from_next(keys, span);
        let one = self.constant(1, span);
        let edge = self.push(GateOp::Public(PublicValue::Ring(vec![1])), span, Some(1), Kind::Ring);
        let starts = self.push(GateOp::Concat(vec![edge, differs]), span, Some(n), Kind::Ring);
        let has = self.propagate(starts, from_a, span);
        let total = match values {
            Some(_) => self.ring2(GateOp::Mul, has, sorted[2], span),
            None => {
                // ends[p] = starts[p + 1], and the last row ends a run;
                // `ends·[from b]` is ready before the scan is.
                let ends = self.push(GateOp::Concat(vec![differs, edge]), span, Some(n), Kind::Ring);
                let from_b = self.ring2(GateOp::Sub, one, from_a, span);
                let last_of_b = self.ring2(GateOp::Mul, ends, from_b, span);
                self.ring2(GateOp::Mul, has, last_of_b, span)
            }
        };
        Ok(self.push(GateOp::Sum(total), span, None, Kind::Ring))
    }

    /// A segmented broadcast over ring vectors: every element takes the
    /// value `values` has at the start of its segment, where `starts` (0 or
    /// 1, element 0 set) marks the first element of each segment. A
    /// Hillis–Steele scan of `⌈log2 n⌉` rounds: at distance `d`, an element
    /// not yet covered by a start takes the value `d` back
    /// (`x ← x[p-d] + s·(x - x[p-d])`) and its flag becomes
    /// `s ∨ s[p-d] = s + s[p-d] - s·s[p-d]`: two products per element, in
    /// the same round.
    pub fn propagate(&mut self, starts: GateId, values: GateId, span: Span) -> GateId {
        self.segmented_scan(starts, values, span, |net, start, cur, back| {
            let delta = net.ring2(GateOp::Sub, cur, back, span);
            let kept = net.ring2(GateOp::Mul, start, delta, span);
            net.ring2(GateOp::Add, back, kept, span)
        })
    }

    /// A Hillis–Steele scan over runs: at distance `d = 1, 2, 4, …`, every
    /// element from `d` on combines its value with the one `d` back
    /// (`combine(start, value, value d back)`, where `start` says a run
    /// begins between them) and its flag becomes `s ∨ s[p-d]`
    /// (`s + s' - s·s'`), both in the same round: `⌈log2 n⌉` rounds.
    fn segmented_scan(
        &mut self,
        starts: GateId,
        values: GateId,
        span: Span,
        combine: impl Fn(&mut Netlist, GateId, GateId, GateId) -> GateId,
    ) -> GateId {
        let n = self.gate(values).width();
        let (mut flags, mut x) = (starts, values);
        let mut d = 1;
        while d < n {
            let step = |net: &mut Netlist, v: GateId, merged: GateId| {
                let head = net.range(v, 0, d, span);
                net.push(GateOp::Concat(vec![head, merged]), span, Some(n), Kind::Ring)
            };
            let (cur_x, back_x) = (self.range(x, d, n - d, span), self.range(x, 0, n - d, span));
            let (cur_f, back_f) = (self.range(flags, d, n - d, span), self.range(flags, 0, n - d, span));
            let merged = combine(self, cur_f, cur_x, back_x);
            let both = self.ring2(GateOp::Mul, cur_f, back_f, span);
            let sum = self.ring2(GateOp::Add, cur_f, back_f, span);
            let either = self.ring2(GateOp::Sub, sum, both, span);
            x = step(self, x, merged);
            flags = step(self, flags, either);
            d *= 2;
        }
        x
    }

    /// `[a run of equal keys ends here]` over a sorted vector, as ring 0/1:
    /// one equality of neighbours per element and one bit injection.
    pub fn run_ends(&mut self, keys: GateId, span: Span) -> GateId {
        let n = self.gate(keys).width();
        let last = self.push(GateOp::Public(PublicValue::Ring(vec![1])), span, Some(1), Kind::Ring);
        if n <= 1 {
            return if n == 1 {
                last
            } else {
                self.push(GateOp::Public(PublicValue::Ring(Vec::new())), span, Some(0), Kind::Ring)
            };
        }
        let differs = self.differs_from_next(keys, span);
        self.push(GateOp::Concat(vec![differs, last]), span, Some(n), Kind::Ring)
    }

    /// `[keys[p] != keys[p + 1]]` for `p < n - 1`, as ring 0/1.
    fn differs_from_next(&mut self, keys: GateId, span: Span) -> GateId {
        let n = self.gate(keys).width();
        let prev = self.range(keys, 0, n - 1, span);
        let next = self.range(keys, 1, n - 1, span);
        let diff = self.ring2(GateOp::Sub, next, prev, span);
        let same = self.is_zero(diff, span);
        let differs = self.push(GateOp::Not(same), span, Some(n - 1), Kind::Bits(1));
        let one = self.constant(1, span);
        self.push(GateOp::Inject(differs, one), span, Some(n - 1), Kind::Ring)
    }

    /// Running sums (counts without `values`) within runs of equal keys
    /// of a sorted vector (`Op::RunTotals`): the run starts, then a
    /// segmented Hillis–Steele scan of `⌈log2 n⌉` rounds,
    /// `x ← x + (1 - s)·x[p-d]`, `s ← s ∨ s[p-d]` (two products per element
    /// and round).
    pub fn run_totals(&mut self, keys: GateId, values: Option<GateId>, span: Span) -> GateId {
        let n = self.gate(keys).width();
        let x = match values {
            Some(v) => v,
            None => {
                let ones = self.push(GateOp::Public(PublicValue::Ring(vec![1; n])), span, Some(n), Kind::Ring);
                // Secret, like the values it stands for, so the scan's
                // products are interactive whatever the keys' visibility.
                let zero = self.constant(0, span);
                let hidden = self.ring2(GateOp::Mul, keys, zero, span);
                self.ring2(GateOp::Add, hidden, ones, span)
            }
        };
        if n <= 1 {
            return x;
        }
        let differs = self.differs_from_next(keys, span);
        let first = self.push(GateOp::Public(PublicValue::Ring(vec![1])), span, Some(1), Kind::Ring);
        let starts = self.push(GateOp::Concat(vec![first, differs]), span, Some(n), Kind::Ring);
        let one = self.constant(1, span);
        self.segmented_scan(starts, x, span, |net, start, cur, back| {
            let open = net.ring2(GateOp::Sub, one, start, span);
            let carried = net.ring2(GateOp::Mul, open, back, span);
            net.ring2(GateOp::Add, cur, carried, span)
        })
    }
}
