//! Order statistics and joins over sorted secret vectors:
//! [`Netlist::quantile`] and [`Netlist::join`].

use super::netlist::{GateId, Netlist};
use super::plan::PlanError;
use crate::program::ir::Span;

impl Netlist {
    /// The `q`-quantile of a fixed-point vector (see `Op::Quantile`).
    pub fn quantile(&mut self, v: GateId, q: u64, frac_bits: u32, span: Span) -> Result<GateId, PlanError> {
        let _ = (v, q, frac_bits);
        Err(PlanError { span, reason: "`quantile` is not implemented yet".into() })
    }

    /// `join_count(a, b)`, or `join_sum(a, b, values)` with `values`.
    pub fn join(&mut self, a: GateId, b: GateId, values: Option<GateId>, span: Span) -> Result<GateId, PlanError> {
        let _ = (a, b, values);
        Err(PlanError { span, reason: "joins are not implemented yet".into() })
    }
}
