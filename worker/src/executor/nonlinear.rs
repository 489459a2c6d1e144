//! Fixed-point functions of secret values: [`Netlist::div_secret`] and
//! [`Netlist::func`] (`sqrt`, `exp`, `log`, `sigmoid`), as static
//! circuits over the netlist's primitives only — ring additions and
//! products, division by a public power of two (truncation, at most one
//! unit off), [`Netlist::sign`], bit injection, and the binary circuits of
//! [`crate::circuits::fixed_point`] on the protocol's arithmetic-to-binary
//! conversion — so they run unchanged under every protocol. Nothing is
//! opened but masked values: the functions reveal nothing.
//!
//! The building blocks (constructions and bounds in
//! `docs/fixed-point-functions.md`):
//!
//! - **normalization** (Catrina and Saxena, "Secure computation with
//!   fixed-point numbers", FC 2010, protocol Norm): the bits of `x`, the
//!   one-hot leading one `h` of `|x|`, injected as ring bits, give
//!   `v = 2^(61-e)` with `2^e <= |x| <= 2^(e+1)`, so `x·v` is `x` scaled
//!   into `[2^61, 2^62]`, a mantissa in `[0.5, 1]` at [`P`] bits after one
//!   truncation;
//! - **reciprocal**: the linear start `2.9142 - 2m` (Catrina–Saxena's
//!   AppRcr), then Goldschmidt's iterations `w <- w(1 + ε)`, `ε <- ε²`;
//! - **polynomials** on `[0, 1)` and `[-1, 1]`, powers by a product tree
//!   (`ceil(log2 d)` product levels), coefficients fitted offline
//!   (Chebyshev interpolation, as MP-SPDZ's and SecretFlow SPU's fixed-point
//!   approximations do) and written here as integers, so every party builds
//!   the same circuit whatever its floating-point library;
//! - **scaling by a secret power of two**: a one-hot over the exponent
//!   (from the normalization, or decoded from bits) selects public powers of
//!   two; segments of 30 exponents each multiply the mantissa once and
//!   truncate once, so no product leaves the ring's safe range. With many
//!   exponents in bits (division, `exp`) the one-hot is factored into two
//!   8-way ones (16 injections instead of one per exponent, one round
//!   more).

use super::netlist::{GateId, GateOp, Kind, Netlist, PublicValue, Recorder};
use super::plan::PlanError;
use crate::circuits::{BinaryOps, fixed_point};
use crate::gf2::Bits;
use crate::program::ir::{Func, Span};
use crate::protocol::additive::division::Division;
use crate::ring::from_signed;

/// Fractional bits of mantissas, reciprocals and polynomial arguments.
/// Products of two such values (`< 2^(2P+2)`) stay below 2^62.
pub const P: u32 = 30;

/// Goldschmidt iterations after the linear start: its relative error
/// 0.0858 squares each time, 0.0858^8 < 2^-28.
const ITERATIONS: usize = 3;

/// `round(2.9142 · 2^P)`.
const W0: i64 = 3_129_098_424;

/// `round(log2(e) · 2^60)`, `round(ln(2) · 2^60)`.
const LOG2E_2_60: u64 = 1_663_314_137_230_540_311;
const LN2_2_60: u64 = 799_144_290_325_165_979;

/// `2^u` on `[0, 1]`, coefficients of `u^i` at 2^-30 (Chebyshev
/// interpolation, degree 8: error below 2^-30).
const EXP2: [i64; 9] = [1073741824, 744261118, 257941253, 59597033, 10327645, 1430944, 166622, 15197, 2013];
/// `ln((t + 3) / 4)` for `t` in `[-1, 1]` (the mantissa `m = (t + 3)/4` in
/// `[0.5, 1]`), coefficients of `t^i` at 2^-30, degree 12.
const LN: [i64; 13] =
    [-308896273, 357913941, -59652323, 13256078, -3314020, 883688, -245467, 70308, -20510, 5786, -1733, 758, -232];
/// `sqrt((t + 3) / 4)`, and `sqrt(2)` times it, at 2^-30, degree 12.
const SQRT: [i64; 13] =
    [929887697, 154981283, -12915107, 2152518, -448441, 104633, -26158, 6863, -1859, 497, -140, 56, -17];
const SQRT2: [i64; 13] =
    [1315059792, 219176632, -18264719, 3044121, -634192, 147973, -36993, 9705, -2629, 702, -199, 80, -23];

/// The largest `fixed_point` the functions accept.
pub const MAX_FRAC_BITS: u32 = 40;

/// Normalization of a secret `x` (see the module documentation).
struct Norm {
    /// The leading one of `|x|` (of `x` for the positive form), one ring
    /// bit per position `0..62`; all zero when `x` is 0 (or, for the
    /// positive form, negative).
    hot: Vec<GateId>,
    /// Its one-hot bundle (62 planes).
    planes: GateId,
    /// `[x < 0]`, one plane.
    sign: GateId,
    /// `x · 2^(61-e)`: `|x|` in `[2^61, 2^62]` with `x`'s sign; 0 when `x`
    /// is 0 (positive form: when `x <= 0`).
    scaled: GateId,
}

impl Netlist {
    /// Elementwise `a / b` of fixed-point values with `frac_bits`
    /// fractional bits, `b` secret; `b = 0` gives 0.
    ///
    /// Both operands are normalized (`a = ma·2^(ea+1-f)`, `b` likewise,
    /// mantissas in `[0.5, 1]`), `1/mb` by Goldschmidt, the mantissa
    /// quotient `ma/mb` in `[0.5, 2]` at [`P`] bits, and the result is that
    /// times `2^(ea - eb + f - P)`: `κ = ea - eb + f` by two 8-bit adders on
    /// the exponents' bits, `2^κ_lo` (its 3 low bits, decoded) by one
    /// product and `2^(8κ_hi)` by one product per value of `κ_hi`, each
    /// after its own truncation or public scaling. Both normalizations
    /// build `2^(61-e)` from two 8-way one-hots (16 injections, one
    /// product) rather than 62 injections: fewer daBits, one more round.
    pub fn div_secret(&mut self, a: GateId, b: GateId, frac_bits: u32, span: Span) -> Result<GateId, PlanError> {
        check_frac_bits(frac_bits, "division by a secret value", span)?;
        let len = self.elementwise(a, b, span, "division")?;
        let (a, b) = (self.widen(a, len, span), self.widen(b, len, span));
        let na = self.normalize(a, true, true, span);
        let nb = self.normalize(b, true, true, span);
        let xa = self.trunc(na.scaled, 62 - P, span);
        let xb = self.trunc(nb.scaled, 62 - P, span);
        // sign(b), 0 when b = 0: the linear start takes b's sign so that
        // the iterations give 1/mb with its sign (and 0 for b = 0).
        let sign_b = self.inject_planes(nb.sign, &[0], span)[0];
        let nonzero_b = self.sum(&nb.hot, span);
        let start = {
            let pos = self.scale(nonzero_b, W0, span);
            let neg = self.scale(sign_b, 2 * W0, span);
            let twice = self.scale(xb, 2, span);
            let s = self.sub(pos, neg, span);
            self.sub(s, twice, span)
        };
        let w = self.goldschmidt(xb, P, start, span);
        let t = self.mul(xa, w, span);
        let ratio = self.trunc(t, P, span);
        // κ = ea - eb + f; κ' = ea + (63 - eb) = κ + 63 - f on 7 bits.
        let ea = self.exponent_bits(na.planes, span);
        let eb = self.exponent_bits(nb.planes, span);
        // κ = ea - eb + f = ea + (63 - eb) + (f - 63) on 8 bits, split as
        // κ = 8·κ_hi + κ_lo; in parallel with the reciprocal.
        let zeros = self.public_bits(0, 2, ea, span);
        let offset = self.public_bits((i64::from(frac_bits) - 63) as u64 & 0xff, 8, ea, span);
        let kappa = {
            let mut ops = Recorder { net: self, span };
            let not_eb = ops.not(&eb);
            let a8 = ops.concat(&[&ea, &zeros]);
            let b8 = ops.concat(&[&not_eb, &zeros]);
            let sum = fixed_point::add(&mut ops, &a8, &b8, false);
            fixed_point::add(&mut ops, &sum, &offset, false)
        };
        // The quotient is (ma/mb)·2^κ = ratio·2^(κ - P): below half a unit
        // for κ < 0, out of the domain above 61.
        let q = self.scale_by_exponent(ratio, kappa, span);
        Ok(self.narrow(q, len, span))
    }

    /// Elementwise `f(x)` of a fixed-point value.
    pub fn func(&mut self, f: Func, x: GateId, frac_bits: u32, span: Span) -> Result<GateId, PlanError> {
        check_frac_bits(frac_bits, f.name(), span)?;
        Ok(match f {
            Func::Exp => self.exp(x, frac_bits, span),
            Func::Sigmoid => self.sigmoid(x, frac_bits, span),
            Func::Log => self.log(x, frac_bits, span),
            Func::Sqrt => self.sqrt(x, frac_bits, span),
        })
    }

    /// `e^x`: `x` clamped to `[lo, hi]` (below `lo` the result is under
    /// half a unit; above `hi` it is the range's end), `y = x·log2(e)` at
    /// [`P`] bits, `2^frac(y)` by a polynomial, times `2^floor(y)` by a
    /// one-hot decoded from `y`'s bits.
    fn exp(&mut self, x: GateId, frac_bits: u32, span: Span) -> GateId {
        let (lo, hi) = exp_limits(frac_bits);
        let below = {
            let d = self.add_const(x, -lo, span);
            self.sign(d, span)
        };
        let above = {
            let h = self.constant(from_signed(hi), span);
            let d = self.sub(h, x, span);
            self.sign(d, span)
        };
        let low = self.neg(x, span);
        let low = self.add_const(low, lo, span);
        let high = self.neg(x, span);
        let high = self.add_const(high, hi, span);
        let fix_low = self.inject(below, low, span);
        let fix_high = self.inject(above, high, span);
        let clamped = self.sum(&[x, fix_low, fix_high], span);
        let y = self.times_log2e(clamped, frac_bits, span);
        // y in [-(f+1), 62-f): k = floor(y) in [-41, 61] fits 8 bits.
        let f = i64::from(frac_bits);
        let ks: Vec<i64> = (-f..=61 - f).collect();
        self.pow2(y, &ks, frac_bits as i32, span)
    }

    /// `1/(1 + e^-|x|)`, or one minus it for negative `x`: `|x|` clamped
    /// to `(P+1)·ln 2` (beyond it `e^-|x| < 2^-31`), the exponential at
    /// [`P`] bits (no normalization: `1 + e` is in `[1, 2]`), Goldschmidt
    /// for the reciprocal, one selection for the sign.
    fn sigmoid(&mut self, x: GateId, frac_bits: u32, span: Span) -> GateId {
        let f = frac_bits;
        // thr = (P + 1)·ln 2 at f bits.
        let thr = ((u128::from(P + 1) * u128::from(LN2_2_60)) >> (60 - f)) as i64;
        let negative = self.sign(x, span);
        let very_negative = {
            let d = self.add_const(x, thr, span);
            self.sign(d, span)
        };
        let very_positive = {
            let t = self.constant(from_signed(thr), span);
            let d = self.sub(t, x, span);
            self.sign(d, span)
        };
        // |x| clamped: x, -x, or thr; the three cases exclude each other,
        // so the conditions are XORs (local).
        let (flip, cap) = {
            let mut ops = Recorder { net: self, span };
            (ops.xor(&negative, &very_negative), ops.xor(&very_negative, &very_positive))
        };
        let minus_twice = self.scale(x, -2, span);
        let to_cap = self.neg(x, span);
        let to_cap = self.add_const(to_cap, thr, span);
        let flipped = self.inject(flip, minus_twice, span);
        let capped = self.inject(cap, to_cap, span);
        let magnitude = self.sum(&[x, flipped, capped], span);
        let minus = self.neg(magnitude, span);
        let y = self.times_log2e(minus, frac_bits, span);
        // y in [-(P+1), 0]: e^-|x| = 2^y at P bits, k = floor(y) in [-P, 0]
        // (below that, under half a unit at P bits).
        let ks: Vec<i64> = (-(P as i64)..=0).collect();
        let e = self.pow2(y, &ks, P as i32, span);
        // 1/(1 + e) = (1/2)·(1/m), m = (1 + e)/2 in [0.5, 1] at P + 1 bits.
        let d = self.add_const(e, 1 << P, span);
        let start = {
            let c = self.constant(from_signed(W0), span);
            self.sub(c, d, span)
        };
        let w = self.goldschmidt(d, P + 1, start, span);
        // w = 1/(1+e) at P + 1 bits; for negative x, 1 - w.
        let other = {
            let one = self.constant(1 << (P + 1), span);
            let twice = self.scale(w, 2, span);
            self.sub(one, twice, span)
        };
        let picked = self.inject(negative, other, span);
        let r = self.add(w, picked, span);
        self.shift(r, f as i32 - (P as i32 + 1), span)
    }

    /// `ln x`, 0 for `x <= 0`: `x = m·2^(e+1)` in units of 2^-f, so
    /// `ln x = ln m + (e + 1 - f)·ln 2` with `ln m` by a polynomial in
    /// `t = 4m - 3`.
    fn log(&mut self, x: GateId, frac_bits: u32, span: Span) -> GateId {
        let norm = self.normalize(x, false, false, span);
        let m = self.trunc(norm.scaled, 62 - P, span);
        let t = self.scale(m, 4, span);
        let t = self.add_const(t, -(3 << P), span);
        let poly = self.polynomial(t, &LN, span);
        // Zero unless x > 0 (the one-hot is then all zero).
        let positive = self.sum(&norm.hot, span);
        let poly = self.mul(poly, positive, span);
        let ln_m = self.trunc(poly, 2 * P - frac_bits, span);
        let f = i64::from(frac_bits);
        let terms: Vec<GateId> = norm
            .hot
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let k = i as i64 + 1 - f;
                let c = (i128::from(k) * i128::from(LN2_2_60) + (1i128 << (59 - frac_bits))) >> (60 - frac_bits);
                self.scale(*h, c as i64, span)
            })
            .collect();
        let exponent = self.sum(&terms, span);
        self.add(ln_m, exponent, span)
    }

    /// `sqrt(x)`, 0 for `x <= 0`: `x = m·2^g` in units of 2^-f with
    /// `g = e + 1`, so `sqrt(x)·2^f = sqrt(m)·2^((g + f)/2)`: `sqrt(m)` by
    /// a polynomial (times `sqrt 2` when `g + f` is odd), then times
    /// `2^floor((g + f)/2)` by the one-hot.
    fn sqrt(&mut self, x: GateId, frac_bits: u32, span: Span) -> GateId {
        let norm = self.normalize(x, false, false, span);
        let m = self.trunc(norm.scaled, 62 - P, span);
        let t = self.scale(m, 4, span);
        let t = self.add_const(t, -(3 << P), span);
        let powers = self.powers(t, SQRT.len() - 1, span);
        let even = self.combine(&powers, &SQRT, span);
        let odd_value = self.combine(&powers, &SQRT2, span);
        let f = frac_bits as usize;
        let odd: Vec<GateId> = (0..62).filter(|i| (i + 1 + f) % 2 == 1).map(|i| norm.hot[i]).collect();
        let odd = self.sum(&odd, span);
        let diff = self.sub(odd_value, even, span);
        let pick = self.mul(odd, diff, span);
        let s = self.add(even, pick, span);
        let s = self.trunc(s, P, span);
        // 2^floor((e + 1 + f)/2) · s / 2^P.
        let exps: Vec<(GateId, i32)> = (0..62).map(|i| (norm.hot[i], ((i + 1 + f) / 2) as i32 - P as i32)).collect();
        self.scale_by_power(s, P + 1, &exps, span)
    }

    // ----- building blocks -----

    /// Normalize `x` (module documentation). `factored`: `2^(61-e)` as a
    /// product of two 8-way one-hots, and `hot` only the indicator
    /// `[x != 0]`. `signed`: `|x|`'s leading one
    /// (`x`'s bits XOR its sign: `|x| - 1` for negative `x`, whose leading
    /// one is `|x|`'s or, for a power of two, one below, so the mantissa
    /// is in `[0.5, 1]`; bit 0 is ORed with the sign so that `x = -1` has
    /// one). Otherwise only positive `x` have a leading one.
    fn normalize(&mut self, x: GateId, signed: bool, factored: bool, span: Span) -> Norm {
        let bits = self.bits_of(x, span);
        let (planes, sign) = {
            let mut ops = Recorder { net: self, span };
            let sign = ops.gather(&bits, &[63]);
            let wide = ops.gather(&sign, &[0; 62]);
            let low = ops.gather(&bits, &(0..62).collect::<Vec<_>>());
            let planes = if signed {
                let t = ops.xor(&low, &wide);
                // Position 0 is set for every negative x: !( !bit0 & !sign ).
                let bit0 = ops.gather(&low, &[0]);
                let nb = ops.not(&bit0);
                let ns = ops.not(&sign);
                let both = ops.and(&nb, &ns);
                let or = ops.not(&both);
                let rest = ops.gather(&t, &(1..62).collect::<Vec<_>>());
                let upper = fixed_point::leading_one(&mut ops, &rest);
                // Position 0 leads when nothing above is set.
                let none = {
                    let any = ops.gather(&upper, &(0..61).collect::<Vec<_>>());
                    let mut acc = ops.gather(&any, &[0]);
                    for j in 1..61 {
                        let p = ops.gather(&any, &[j]);
                        acc = ops.xor(&acc, &p);
                    }
                    ops.not(&acc)
                };
                let h0 = ops.and(&or, &none);
                ops.concat(&[&h0, &upper])
            } else {
                let ns = ops.not(&sign);
                let wide_ns = ops.gather(&ns, &[0; 62]);
                let t = ops.and(&low, &wide_ns);
                fixed_point::leading_one(&mut ops, &t)
            };
            (planes, sign)
        };
        if factored {
            // 2^(61-e) = 2^b · 2^(8a) with 61 - e = 8a + b: two one-hots of
            // 8 positions each (XORs of h's planes, local), 16 injections
            // and one product instead of 62 injections.
            let (lo, hi) = {
                let mut ops = Recorder { net: self, span };
                let part = |ops: &mut Recorder<'_>, pick: &dyn Fn(usize) -> usize| {
                    let groups: Vec<GateId> = (0..8)
                        .map(|k| {
                            let members: Vec<usize> = (0..62).filter(|i| pick(61 - i) == k).collect();
                            let mut acc = ops.gather(&planes, &members[..1]);
                            for i in &members[1..] {
                                let p = ops.gather(&planes, &[*i]);
                                acc = ops.xor(&acc, &p);
                            }
                            acc
                        })
                        .collect();
                    let refs: Vec<&GateId> = groups.iter().collect();
                    ops.concat(&refs)
                };
                let lo = part(&mut ops, &|d| d & 7);
                let hi = part(&mut ops, &|d| d >> 3);
                (lo, hi)
            };
            let lo = self.inject_planes(lo, &(0..8).collect::<Vec<_>>(), span);
            let hi = self.inject_planes(hi, &(0..8).collect::<Vec<_>>(), span);
            let lo_terms: Vec<GateId> = lo.iter().enumerate().map(|(b, h)| self.scale(*h, 1 << b, span)).collect();
            let hi_terms: Vec<GateId> =
                hi.iter().enumerate().map(|(a, h)| self.scale(*h, 1 << (8 * a), span)).collect();
            let (v_lo, v_hi) = (self.sum(&lo_terms, span), self.sum(&hi_terms, span));
            let v = self.mul(v_lo, v_hi, span);
            let scaled = self.mul(x, v, span);
            // The one-hot's ring form is not needed, only whether it is set.
            let nonzero = self.sum(&lo, span);
            return Norm { hot: vec![nonzero], planes, sign, scaled };
        }
        let hot = self.inject_planes(planes, &(0..62).collect::<Vec<_>>(), span);
        let terms: Vec<GateId> = hot.iter().enumerate().map(|(i, h)| self.scale(*h, 1 << (61 - i), span)).collect();
        let v = self.sum(&terms, span);
        let scaled = self.mul(x, v, span);
        Norm { hot, planes, sign, scaled }
    }

    /// The 6 bits of the position of a 62-plane one-hot (XORs, local).
    fn exponent_bits(&mut self, planes: GateId, span: Span) -> GateId {
        let mut ops = Recorder { net: self, span };
        let mut bits = Vec::new();
        for j in 0..6 {
            let members: Vec<usize> = (0..62).filter(|i| i >> j & 1 == 1).collect();
            let mut acc = ops.gather(&planes, &members[..1]);
            for i in &members[1..] {
                let p = ops.gather(&planes, &[*i]);
                acc = ops.xor(&acc, &p);
            }
            bits.push(acc);
        }
        let refs: Vec<&GateId> = bits.iter().collect();
        ops.concat(&refs)
    }

    /// Goldschmidt's reciprocal: `x` at `x_bits` fractional bits with
    /// `|x|` in `[0.5, 1]` (or 0), `start` its linear start at [`P`] bits;
    /// `1/x` at [`P`] bits (0 when `start` is 0).
    fn goldschmidt(&mut self, x: GateId, x_bits: u32, start: GateId, span: Span) -> GateId {
        let product = self.mul(x, start, span);
        let product = self.trunc(product, x_bits, span);
        let one = self.constant(1 << P, span);
        let mut eps = self.sub(one, product, span);
        let mut w = start;
        for i in 0..ITERATIONS {
            let factor = self.add_const(eps, 1 << P, span);
            let next = self.mul(w, factor, span);
            w = self.trunc(next, P, span);
            if i + 1 < ITERATIONS {
                let sq = self.mul(eps, eps, span);
                eps = self.trunc(sq, P, span);
            }
        }
        w
    }

    /// `x · log2(e)` at [`P`] bits for `x` at `frac_bits` with
    /// `|x| < 2^(46 - frac_bits)` (the clamped domains): the constant
    /// `log2(e)·2^60` in four 16-bit limbs, each product below 2^62 and
    /// truncated once (in parallel); a limb worth less than 2^-8 units is
    /// dropped.
    fn times_log2e(&mut self, x: GateId, frac_bits: u32, span: Span) -> GateId {
        let mut terms = Vec::new();
        for j in 0..4i32 {
            let limb = ((LOG2E_2_60 >> (16 * j)) & 0xffff) as i64;
            // x·2^f · limb·2^(16j) / 2^60 · 2^P
            let shift = 16 * j + P as i32 - frac_bits as i32 - 60;
            if shift < -62 {
                continue;
            }
            let product = self.scale(x, limb, span);
            terms.push(self.shift(product, shift, span));
        }
        self.sum(&terms, span)
    }

    /// `2^y` at `out_bits` fractional bits for `y` at [`P`] bits whose
    /// floor is one of `ks` (between -128 and 127): `2^frac(y)` by a
    /// polynomial of degree 8 and `2^floor(y)` by a one-hot decoded from
    /// the 8 bits above the fraction. A floor outside `ks` gives 0.
    fn pow2(&mut self, y: GateId, ks: &[i64], out_bits: i32, span: Span) -> GateId {
        let bits = self.bits_of(y, span);
        let int_planes: Vec<usize> = (P as usize..P as usize + 8).collect();
        let k = {
            let mut ops = Recorder { net: self, span };
            ops.gather(&bits, &int_planes)
        };
        // floor(y) as a ring value, from its 8 bits (two's complement).
        let ring_bits = self.inject_planes(k, &(0..8).collect::<Vec<_>>(), span);
        let terms: Vec<GateId> = ring_bits
            .iter()
            .enumerate()
            .map(|(j, b)| {
                let w = if j == 7 { -(1i64 << (P + 7)) } else { 1i64 << (P as usize + j) };
                self.scale(*b, w, span)
            })
            .collect();
        let whole = self.sum(&terms, span);
        let u = self.sub(y, whole, span);
        let p = self.polynomial_unsigned(u, &EXP2, span);
        if ks.len() > 40 {
            // Many exponents (exp): κ = k + out_bits on 8 bits (an adder
            // with a public operand, in parallel with the polynomial), then
            // two 8-way one-hots: 16 injections instead of one per value.
            let offset = self.public_bits(out_bits as u64 & 0xff, 8, k, span);
            let kappa = {
                let mut ops = Recorder { net: self, span };
                fixed_point::add(&mut ops, &k, &offset, false)
            };
            return self.scale_by_exponent(p, kappa, span);
        }
        let values: Vec<u64> = ks.iter().map(|k| (*k as u64) & 0xff).collect();
        let hot = self.decode_ring(k, &values, span);
        let exps: Vec<(GateId, i32)> =
            hot.into_iter().zip(ks).map(|(h, k)| (h, *k as i32 + out_bits - P as i32)).collect();
        self.scale_by_power(p, P + 2, &exps, span)
    }

    /// `m · 2^(κ - P)` for `|m| <= 2^(P+2)` and `κ` in `[0, 63]` given as 8
    /// two's-complement planes (any other κ gives 0): κ's low 3 and high 5
    /// bits decoded to two 8-way one-hots (16 injections), `r = m·2^κ_lo`
    /// (one product, below 2^39), then for each value of `κ_hi` its
    /// truncation or public product by `2^(8κ_hi - P)` and one product by
    /// its one-hot bit. Three rounds after `m`.
    fn scale_by_exponent(&mut self, m: GateId, kappa: GateId, span: Span) -> GateId {
        let (lo, hi) = {
            let mut ops = Recorder { net: self, span };
            let low = ops.gather(&kappa, &[0, 1, 2]);
            let high = ops.gather(&kappa, &[3, 4, 5, 6, 7]);
            let eight: Vec<u64> = (0..8).collect();
            (fixed_point::decode(&mut ops, &low, &eight), fixed_point::decode(&mut ops, &high, &eight))
        };
        let lo = self.inject_planes(lo, &(0..8).collect::<Vec<_>>(), span);
        let hi = self.inject_planes(hi, &(0..8).collect::<Vec<_>>(), span);
        let lo_terms: Vec<GateId> = lo.iter().enumerate().map(|(b, h)| self.scale(*h, 1 << b, span)).collect();
        let v_lo = self.sum(&lo_terms, span);
        let r = self.mul(m, v_lo, span);
        let parts: Vec<GateId> = hi
            .iter()
            .enumerate()
            .map(|(k, h)| {
                let t = self.shift(r, 8 * k as i32 - P as i32, span);
                self.mul(*h, t, span)
            })
            .collect();
        self.sum(&parts, span)
    }

    /// The powers `t^1..t^d` of `t` at [`P`] bits (`|t| <= 2^P`), by a
    /// product tree: `t^(2^j + i) = t^(2^j)·t^i`, `ceil(log2 d)` product
    /// levels of one product and one truncation.
    fn powers(&mut self, t: GateId, degree: usize, span: Span) -> Vec<GateId> {
        let mut powers = vec![t];
        while powers.len() < degree {
            let top = powers.len(); // t^top is the largest power of two so far
            let base = powers[top - 1];
            let more: Vec<GateId> = (0..top.min(degree - top))
                .map(|i| {
                    let p = self.mul(base, powers[i], span);
                    self.trunc(p, P, span)
                })
                .collect();
            powers.extend(more);
        }
        powers
    }

    /// `Σ c_i t^i` at 2P bits (coefficients at 2^-30), from the powers.
    fn combine(&mut self, powers: &[GateId], coefficients: &[i64], span: Span) -> GateId {
        let mut terms = vec![self.constant(from_signed(coefficients[0] << P), span)];
        for (c, p) in coefficients[1..].iter().zip(powers) {
            terms.push(self.scale(*p, *c, span));
        }
        self.sum(&terms, span)
    }

    /// A polynomial at 2P bits of `t` at P bits.
    fn polynomial(&mut self, t: GateId, coefficients: &[i64], span: Span) -> GateId {
        let powers = self.powers(t, coefficients.len() - 1, span);
        self.combine(&powers, coefficients, span)
    }

    /// A polynomial of `u` in `[0, 1)` at P bits, result at P bits.
    fn polynomial_unsigned(&mut self, u: GateId, coefficients: &[i64], span: Span) -> GateId {
        let sum = self.polynomial(u, coefficients, span);
        self.trunc(sum, P, span)
    }

    /// `m · 2^s` where `s` is the exponent of the one ring bit set among
    /// `exps` (0 when none is): `|m| < 2^m_bits`. Exponents are grouped in
    /// segments of `62 - m_bits`: per segment one product `m·Σ h·2^(s-s0)`
    /// and one truncation (or public scaling) by `2^s0`, all in parallel.
    fn scale_by_power(&mut self, m: GateId, m_bits: u32, exps: &[(GateId, i32)], span: Span) -> GateId {
        let width = 62 - m_bits as i32;
        let mut sorted = exps.to_vec();
        sorted.sort_by_key(|(_, s)| *s);
        let mut parts = Vec::new();
        let mut i = 0;
        while i < sorted.len() {
            let s0 = sorted[i].1;
            let mut terms = Vec::new();
            while i < sorted.len() && sorted[i].1 < s0 + width {
                let (h, s) = sorted[i];
                terms.push(self.scale(h, 1 << (s - s0), span));
                i += 1;
            }
            let v = self.sum(&terms, span);
            let product = self.mul(m, v, span);
            parts.push(self.shift(product, s0, span));
        }
        if parts.is_empty() {
            return self.scale(m, 0, span);
        }
        self.sum(&parts, span)
    }

    /// One ring bit per value: `[bits == v]` by [`fixed_point::decode`],
    /// each plane injected.
    fn decode_ring(&mut self, bits: GateId, values: &[u64], span: Span) -> Vec<GateId> {
        let hot = {
            let mut ops = Recorder { net: self, span };
            fixed_point::decode(&mut ops, &bits, values)
        };
        self.inject_planes(hot, &(0..values.len()).collect::<Vec<_>>(), span)
    }

    /// The 64 bits of a ring value: the protocol's conversion, then a
    /// subtraction circuit.
    fn bits_of(&mut self, x: GateId, span: Span) -> GateId {
        let (c, r) = self.in_binary(x, span);
        let mut ops = Recorder { net: self, span };
        fixed_point::sub(&mut ops, &c, &r)
    }

    /// Planes of a bundle as ring bits (one bit injection each).
    fn inject_planes(&mut self, bundle: GateId, planes: &[usize], span: Span) -> Vec<GateId> {
        let one = self.constant(1, span);
        planes
            .iter()
            .map(|j| {
                let p = Recorder { net: self, span }.gather(&bundle, &[*j]);
                self.inject(p, one, span)
            })
            .collect()
    }

    fn inject(&mut self, plane: GateId, x: GateId, span: Span) -> GateId {
        let len = match (self.gate(plane).len, self.gate(x).len) {
            (Some(n), _) | (None, Some(n)) => Some(n),
            (None, None) => None,
        };
        self.push(GateOp::Inject(plane, x), span, len, Kind::Ring)
    }

    fn add(&mut self, a: GateId, b: GateId, span: Span) -> GateId {
        self.ring2(GateOp::Add, a, b, span)
    }

    fn sub(&mut self, a: GateId, b: GateId, span: Span) -> GateId {
        self.ring2(GateOp::Sub, a, b, span)
    }

    fn mul(&mut self, a: GateId, b: GateId, span: Span) -> GateId {
        self.ring2(GateOp::Mul, a, b, span)
    }

    fn neg(&mut self, a: GateId, span: Span) -> GateId {
        let len = self.gate(a).len;
        self.push(GateOp::Neg(a), span, len, Kind::Ring)
    }

    fn scale(&mut self, a: GateId, k: i64, span: Span) -> GateId {
        let c = self.constant(from_signed(k), span);
        self.mul(a, c, span)
    }

    fn add_const(&mut self, a: GateId, k: i64, span: Span) -> GateId {
        let c = self.constant(from_signed(k), span);
        self.add(a, c, span)
    }

    fn sum(&mut self, terms: &[GateId], span: Span) -> GateId {
        let Some((first, rest)) = terms.split_first() else {
            return self.constant(0, span);
        };
        rest.iter().fold(*first, |acc, t| self.add(acc, *t, span))
    }

    /// `x / 2^bits` (a truncation, at most one unit off).
    fn trunc(&mut self, x: GateId, bits: u32, span: Span) -> GateId {
        if bits == 0 {
            return x;
        }
        let division = Division::new(1u64 << bits).expect("a power of two up to 2^62");
        let len = self.gate(x).len;
        self.push(GateOp::Div(x, division), span, len, Kind::Ring)
    }

    /// `x · 2^k` for a signed `k`: a public product or a truncation.
    fn shift(&mut self, x: GateId, k: i32, span: Span) -> GateId {
        if k >= 0 { self.scale(x, 1 << k, span) } else { self.trunc(x, k.unsigned_abs(), span) }
    }

    /// `x` with `len` elements (a scalar broadcast).
    fn widen(&mut self, x: GateId, len: Option<usize>, span: Span) -> GateId {
        match (self.gate(x).len, len) {
            (None, Some(n)) => {
                let zeros = self.push(GateOp::Public(PublicValue::Ring(vec![0; n])), span, Some(n), Kind::Ring);
                self.push(GateOp::Add(x, zeros), span, Some(n), Kind::Ring)
            }
            _ => x,
        }
    }

    /// The `planes` low bits of the public `value`, over `like`'s elements.
    fn public_bits(&mut self, value: u64, planes: usize, like: GateId, span: Span) -> GateId {
        let len = self.gate(like).len;
        let bits = Bits::decompose(&vec![value; self.gate(like).width()], planes);
        self.push(GateOp::Public(PublicValue::Bits(bits)), span, len, Kind::Bits(planes))
    }

    /// `x` as `len` says (a scalar stays a scalar).
    fn narrow(&mut self, x: GateId, len: Option<usize>, span: Span) -> GateId {
        if self.gate(x).len == len {
            return x;
        }
        let zero = self.constant(0, span);
        self.push(GateOp::Add(x, zero), span, len, Kind::Ring)
    }
}

/// The functions need `fixed_point` at most [`MAX_FRAC_BITS`].
fn check_frac_bits(frac_bits: u32, what: &str, span: Span) -> Result<(), PlanError> {
    if frac_bits > MAX_FRAC_BITS {
        return Err(PlanError {
            span,
            reason: format!("{what} needs fixed_point {MAX_FRAC_BITS} or less, the program has {frac_bits}"),
        });
    }
    Ok(())
}

/// The clamp of `exp`'s argument, encoded at `frac_bits`: below `lo`,
/// `e^x < 2^-(f+1)` (0 on the grid); `hi` is the largest grid point whose
/// exponential is below the range's end `2^(62-f)` by a margin the
/// circuit's error cannot cross (2^-22 in `y`).
pub fn exp_limits(frac_bits: u32) -> (i64, i64) {
    let f = i128::from(frac_bits);
    let lo = -(((f + 1) * i128::from(LN2_2_60)) >> (60 - f)) - 1;
    let hi_y = ((62 - f) << 60) - (1 << 38);
    // hi = floor(hi_y · ln 2) at f bits (hi_y·ln2·2^60 < 2^126).
    let hi = (hi_y * i128::from(LN2_2_60)) >> (120 - f);
    (lo as i64, hi as i64)
}

#[cfg(test)]
mod tests {
    //! The circuits evaluated in the clear, gate by gate, with truncations
    //! off by a random unit as the protocols' are; the protocols themselves
    //! are tested in `worker/tests/nonlinear.rs`.

    use super::*;
    use crate::executor::plan::{Lowering, Quotients};
    use crate::program::plain;
    use crate::protocol::ProtocolName;
    use crate::ring::{floor_div, to_signed};
    use std::collections::HashMap;

    #[derive(Clone)]
    enum V {
        R(Vec<u64>),
        B(Bits),
    }

    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// Evaluate every gate in the clear; `inputs[i]` is input `i`.
    fn evaluate(net: &Netlist, inputs: &[Vec<u64>], seed: u64) -> Vec<V> {
        let mut rng = Rng(seed | 1);
        let mut masks: HashMap<GateId, Vec<u64>> = HashMap::new();
        let mut out: Vec<V> = Vec::with_capacity(net.gates.len());
        for (id, gate) in net.gates.iter().enumerate() {
            let width = gate.width();
            let ring = |g: &GateId| match &out[*g] {
                V::R(v) if v.len() == 1 && width > 1 => vec![v[0]; width],
                V::R(v) => v.clone(),
                V::B(_) => panic!("gate {g} is not ring"),
            };
            let bits = |g: &GateId| match &out[*g] {
                V::B(b) if b.len() == 1 && width > 1 => b.repeat(width),
                V::B(b) => b.clone(),
                V::R(_) => panic!("gate {g} is not bits"),
            };
            let zip = |a: &GateId, b: &GateId, f: fn(u64, u64) -> u64| {
                let (a, b) = (ring(a), ring(b));
                V::R(a.iter().zip(&b).map(|(x, y)| f(*x, *y)).collect())
            };
            let value = match &gate.op {
                GateOp::Public(PublicValue::Ring(v)) => V::R(v.clone()),
                GateOp::Public(PublicValue::Bits(b)) => V::B(b.clone()),
                GateOp::Input { input, .. } => V::R(inputs[*input].clone()),
                GateOp::Add(a, b) => zip(a, b, u64::wrapping_add),
                GateOp::Sub(a, b) => zip(a, b, u64::wrapping_sub),
                GateOp::Mul(a, b) => zip(a, b, u64::wrapping_mul),
                GateOp::Neg(a) => V::R(ring(a).iter().map(|x| x.wrapping_neg()).collect()),
                GateOp::Div(a, d) => V::R(
                    ring(a)
                        .iter()
                        .map(|x| {
                            let q = floor_div(*x, d.divisor);
                            let exact = (to_signed(*x) as i128).rem_euclid(d.divisor as i128) == 0;
                            if exact || !gate.secret { q } else { q.wrapping_add(rng.next() % 3).wrapping_sub(1) }
                        })
                        .collect(),
                ),
                GateOp::Sum(a) => V::R(vec![ring(a).iter().fold(0u64, |s, x| s.wrapping_add(*x))]),
                GateOp::Concat(parts) => match gate.kind {
                    Kind::Ring => V::R(
                        parts
                            .iter()
                            .flat_map(|p| match &out[*p] {
                                V::R(v) => v.clone(),
                                V::B(_) => unreachable!(),
                            })
                            .collect(),
                    ),
                    Kind::Bits(_) => {
                        let bs: Vec<Bits> = parts
                            .iter()
                            .map(|p| match &out[*p] {
                                V::B(b) => b.clone(),
                                V::R(_) => unreachable!(),
                            })
                            .collect();
                        V::B(Bits::concat_elements(&bs.iter().collect::<Vec<_>>()))
                    }
                },
                GateOp::Strided { a, start, step, count } => {
                    let v = match &out[*a] {
                        V::R(v) => v.clone(),
                        V::B(_) => unreachable!(),
                    };
                    V::R((0..*count).map(|k| v[start + k * step]).collect())
                }
                GateOp::MaskedOpen(x) => {
                    let r: Vec<u64> = (0..width).map(|_| rng.next()).collect();
                    let c = ring(x).iter().zip(&r).map(|(x, r)| x.wrapping_add(*r)).collect();
                    masks.insert(id, r);
                    V::R(c)
                }
                GateOp::MaskBits(open) => V::B(Bits::decompose(&masks[open], 64)),
                GateOp::SplitLocal(x) => {
                    let u: Vec<u64> = (0..width).map(|_| rng.next()).collect();
                    masks.insert(*x, u.clone());
                    V::B(Bits::decompose(&u, 64))
                }
                GateOp::SplitInput(x) => {
                    let v: Vec<u64> = masks[x].iter().zip(ring(x)).map(|(u, x)| u.wrapping_sub(x)).collect();
                    V::B(Bits::decompose(&v, 64))
                }
                GateOp::Decompose(a) => V::B(Bits::decompose(&ring(a), 64)),
                GateOp::Xor(a, b) => {
                    let mut x = bits(a);
                    x.xor_assign(&bits(b));
                    V::B(x)
                }
                GateOp::And(a, b) => {
                    let mut x = bits(a);
                    x.and_assign(&bits(b));
                    V::B(x)
                }
                GateOp::Not(a) => {
                    let mut x = bits(a);
                    x.not_assign();
                    V::B(x)
                }
                GateOp::Planes(a, indices) => V::B(bits(a).gather(indices)),
                GateOp::Stack(parts) => {
                    let bs: Vec<Bits> = parts.iter().map(bits).collect();
                    V::B(Bits::concat(&bs.iter().collect::<Vec<_>>()))
                }
                GateOp::Inject(b, x) => {
                    let (b, x) = (bits(b), ring(x));
                    V::R((0..width).map(|i| if b.get(0, i) { x[i] } else { 0 }).collect())
                }
                op => panic!("no clear evaluation of {op:?}"),
            };
            out.push(value);
        }
        out
    }

    fn lowering(protocol: ProtocolName) -> Lowering {
        Lowering { protocol, quotients: Quotients::Exact }
    }

    const PROTOCOLS: [ProtocolName; 2] = [ProtocolName::AdditiveSemiHonest, ProtocolName::Replicated3];

    /// Build `build` over inputs of `values[i]`, evaluate in the clear:
    /// the output and the circuit's depth.
    fn run(
        protocol: ProtocolName,
        values: &[Vec<i64>],
        seed: u64,
        build: impl Fn(&mut Netlist, &[GateId]) -> GateId,
    ) -> (Vec<i64>, usize) {
        let mut net = Netlist { gates: Vec::new(), lowering: lowering(protocol), ..Netlist::default() };
        let span = Span::default();
        let ids: Vec<GateId> = (0..values.len())
            .map(|i| net.push(GateOp::Input { input: i, party: 0 }, span, Some(values[i].len()), Kind::Ring))
            .collect();
        let out = build(&mut net, &ids);
        let inputs: Vec<Vec<u64>> = values.iter().map(|v| v.iter().map(|x| from_signed(*x)).collect()).collect();
        let depth = net.gates.iter().map(|g| g.depth).max().unwrap_or(0);
        match &evaluate(&net, &inputs, seed)[out] {
            V::R(v) => (v.iter().map(|x| to_signed(*x)).collect(), depth),
            V::B(_) => panic!("a bundle"),
        }
    }

    /// Log-uniform magnitudes in `[1, 2^max_bits)`, both signs, and edges.
    fn magnitudes(n: usize, max_bits: u32, seed: u64, signed: bool) -> Vec<i64> {
        let mut rng = Rng(seed | 1);
        let mut v: Vec<i64> = vec![0, 1, -1, 2, -2, 3, (1 << max_bits) - 1, 1 << (max_bits - 1), 65536, 65535, 65537];
        while v.len() < n {
            let bits = rng.next() % u64::from(max_bits) + 1;
            let m = (rng.next() >> (64 - bits)) as i64;
            v.push(if signed && rng.next() & 1 == 1 { -m } else { m });
        }
        if !signed {
            v.retain(|x| *x >= 0);
        }
        v
    }

    #[test]
    fn division_measured() {
        for f in [16u32, 0, 8, 24, 32, 40] {
            for protocol in PROTOCOLS {
                let a = magnitudes(3000, 61, 7 + u64::from(f), true);
                let b = magnitudes(3000, 61, 9 + u64::from(f), true);
                let (q, depth) = run(protocol, &[a.clone(), b.clone()], 5, |net, ids| {
                    net.div_secret(ids[0], ids[1], f, Span::default()).unwrap()
                });
                let mut worst_rel: f64 = 0.0;
                let mut worst_abs = 0i64;
                for i in 0..a.len() {
                    let want = to_signed(plain::div_secret(from_signed(a[i]), from_signed(b[i]), f));
                    let exact = if b[i] == 0 { 0.0 } else { a[i] as f64 * (f as f64).exp2() / b[i] as f64 };
                    if exact.abs() >= ((60 - f) as f64).exp2() * (f as f64).exp2() {
                        continue; // out of the domain
                    }
                    let err = (q[i] - want).abs();
                    let allowed = (want.abs() as f64 * (-25f64).exp2()) as i64 + 2;
                    assert!(
                        err <= allowed,
                        "f {f} {protocol:?}: {} / {} = {} want {want} (exact {exact})",
                        a[i],
                        b[i],
                        q[i]
                    );
                    worst_abs = worst_abs.max(if want.abs() < 1 << 20 { err } else { 0 });
                    if want.abs() > 1 << 30 {
                        worst_rel = worst_rel.max(err as f64 / want.abs() as f64);
                    }
                }
                println!(
                    "f {f} {protocol:?}: depth {depth}, worst abs (|q| < 2^20) {worst_abs}, worst rel 2^{:.1}",
                    worst_rel.log2()
                );
            }
        }
    }

    /// Inputs for `f` at `frac_bits`: edges and log-uniform magnitudes
    /// over the domain (`exp`: |x| < 64; sigmoid: anything; log and sqrt:
    /// the whole range, negatives included).
    fn func_inputs(f: Func, frac_bits: u32, seed: u64) -> Vec<i64> {
        let unit = 1i64 << frac_bits;
        let top = (1i64 << 62) - 1;
        let (lo, hi) = exp_limits(frac_bits);
        let mut v = match f {
            Func::Exp => {
                let mut v = vec![0, 1, -1, unit, -unit, lo, lo - 1, lo + 1, hi, hi + 1, hi - 1, top, -top];
                v.extend(magnitudes(3000, frac_bits + 6, seed, true));
                v
            }
            Func::Sigmoid => {
                let mut v = vec![0, 1, -1, unit, -unit, top, -top, 40 * unit, -40 * unit];
                v.extend(magnitudes(3000, (frac_bits + 6).min(61), seed, true));
                v.extend(magnitudes(300, 61, seed + 1, true));
                v
            }
            Func::Log | Func::Sqrt => {
                let mut v = vec![0, 1, -1, 2, unit, unit - 1, unit + 1, top, -top, top - 1];
                v.extend(magnitudes(3000, 61, seed, true));
                v
            }
        };
        v.truncate(3000);
        v
    }

    /// Check `f` against plain within `|want|·2^rel + 2 ulps + 2^-abs`
    /// (absolute, in reals) and print the worst errors seen.
    fn measure(f: Func, rel: i32, abs: u32) {
        for frac_bits in [16u32, 0, 8, 24, 32, 40] {
            for protocol in PROTOCOLS {
                let x = func_inputs(f, frac_bits, 3 + u64::from(frac_bits));
                let (y, depth) = run(protocol, std::slice::from_ref(&x), 9, |net, ids| {
                    net.func(f, ids[0], frac_bits, Span::default()).unwrap()
                });
                let mut worst_abs = 0i64;
                let mut worst_rel: f64 = 0.0;
                for i in 0..x.len() {
                    let want = to_signed(plain::func(f, from_signed(x[i]), frac_bits));
                    let err = (y[i] - want).abs();
                    let allowed = (want.abs() as f64 * f64::from(rel).exp2()) as i64
                        + 2
                        + if frac_bits > abs { 1 << (frac_bits - abs) } else { 0 };
                    assert!(err <= allowed, "{f:?} f {frac_bits} {protocol:?}: x {} got {} want {want}", x[i], y[i]);
                    if want.abs() < 1 << 34 {
                        worst_abs = worst_abs.max(err);
                    } else if err as f64 / want.abs() as f64 > worst_rel {
                        worst_rel = err as f64 / want.abs() as f64;
                        if std::env::var("SHOW").is_ok() {
                            println!("  x {} got {} want {want}", x[i], y[i]);
                        }
                    }
                }
                println!(
                    "{f:?} f {frac_bits} {protocol:?}: depth {depth}, worst abs (|y| < 2^34) {worst_abs}, worst rel 2^{:.1}",
                    worst_rel.log2()
                );
            }
        }
    }

    #[test]
    fn exp_measured() {
        measure(Func::Exp, -26, 64);
    }

    #[test]
    fn sigmoid_measured() {
        measure(Func::Sigmoid, -60, 27);
    }

    #[test]
    fn log_measured() {
        measure(Func::Log, -60, 27);
    }

    #[test]
    fn sqrt_measured() {
        measure(Func::Sqrt, -27, 64);
    }
}
