//! Fixed-point functions of secret values: [`Netlist::div_secret`] and
//! [`Netlist::func`].

use super::netlist::{GateId, Netlist};
use super::plan::PlanError;
use crate::program::ir::{Func, Span};

impl Netlist {
    /// Elementwise `a / b` of fixed-point values with `frac_bits`
    /// fractional bits, `b` secret; `b = 0` gives 0.
    pub fn div_secret(&mut self, a: GateId, b: GateId, frac_bits: u32, span: Span) -> Result<GateId, PlanError> {
        let _ = (a, b, frac_bits);
        Err(PlanError { span, reason: "division by a secret value is not implemented yet".into() })
    }

    /// Elementwise `f(x)` of a fixed-point value.
    pub fn func(&mut self, f: Func, x: GateId, frac_bits: u32, span: Span) -> Result<GateId, PlanError> {
        let _ = (x, frac_bits);
        Err(PlanError { span, reason: format!("`{}` is not implemented yet", f.name()) })
    }
}
