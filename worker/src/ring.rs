//! Arithmetic in the ring Z_2^64.
//!
//! Ring elements are `u64` and every operation wraps (two's complement), so
//! signed values are represented as their `i64` bit pattern. The functions
//! here work on whole slices: the executor always operates on vectors, and
//! tight loops over slices are what the compiler vectorizes.

/// The number of bits of a ring element (k in Z_2^k).
pub const RING_BITS: u32 = 64;

/// Interpret a ring element as a signed integer.
#[inline]
pub fn to_signed(x: u64) -> i64 {
    x as i64
}

/// The ring element of a signed integer.
#[inline]
pub fn from_signed(x: i64) -> u64 {
    x as u64
}

/// `dst[i] += src[i]`.
pub fn add_assign(dst: &mut [u64], src: &[u64]) {
    debug_assert_eq!(dst.len(), src.len());
    for (d, s) in dst.iter_mut().zip(src) {
        *d = d.wrapping_add(*s);
    }
}

/// `dst[i] -= src[i]`.
pub fn sub_assign(dst: &mut [u64], src: &[u64]) {
    debug_assert_eq!(dst.len(), src.len());
    for (d, s) in dst.iter_mut().zip(src) {
        *d = d.wrapping_sub(*s);
    }
}

/// `dst[i] = -dst[i]`.
pub fn neg_assign(dst: &mut [u64]) {
    for d in dst.iter_mut() {
        *d = d.wrapping_neg();
    }
}

/// `dst[i] *= c`.
pub fn scale_assign(dst: &mut [u64], c: u64) {
    for d in dst.iter_mut() {
        *d = d.wrapping_mul(c);
    }
}

/// `dst[i] *= src[i]`.
pub fn mul_assign(dst: &mut [u64], src: &[u64]) {
    debug_assert_eq!(dst.len(), src.len());
    for (d, s) in dst.iter_mut().zip(src) {
        *d = d.wrapping_mul(*s);
    }
}

/// The wrapping sum of all elements.
pub fn sum(xs: &[u64]) -> u64 {
    xs.iter().fold(0u64, |acc, x| acc.wrapping_add(*x))
}

/// Floor division of a signed ring element by a positive divisor.
pub fn floor_div(x: u64, divisor: u64) -> u64 {
    debug_assert!(divisor > 0 && divisor <= i64::MAX as u64);
    from_signed(to_signed(x).div_euclid(divisor as i64))
}

/// Serialize elements as little-endian bytes (the wire format of vectors).
pub fn to_le_bytes(xs: &[u64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(xs.len() * 8);
    for x in xs {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

/// Parse little-endian bytes into elements; `None` unless the length is a
/// multiple of 8.
pub fn from_le_bytes(bytes: &[u8]) -> Option<Vec<u64>> {
    if !bytes.len().is_multiple_of(8) {
        return None;
    }
    Some(bytes.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("chunk of 8"))).collect())
}

/// Append `xs` to `out` as little-endian bytes (the wire format).
pub fn extend_le_bytes(out: &mut Vec<u8>, xs: &[u64]) {
    let start = out.len();
    out.resize(start + 8 * xs.len(), 0);
    for (dst, x) in out[start..].chunks_exact_mut(8).zip(xs) {
        dst.copy_from_slice(&x.to_le_bytes());
    }
}

/// `dst[i] += the i-th little-endian element of bytes`, which holds exactly
/// `8 * dst.len()` bytes (panics otherwise: callers check lengths first).
pub fn add_le_bytes(dst: &mut [u64], bytes: &[u8]) {
    assert_eq!(bytes.len(), 8 * dst.len(), "byte length does not match");
    for (d, b) in dst.iter_mut().zip(bytes.chunks_exact(8)) {
        *d = d.wrapping_add(u64::from_le_bytes(b.try_into().expect("chunk of 8")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_arithmetic() {
        let mut a = vec![u64::MAX, 1, 0];
        add_assign(&mut a, &[1, 1, 0]);
        assert_eq!(a, vec![0, 2, 0]);
        sub_assign(&mut a, &[1, 3, 0]);
        assert_eq!(a, vec![u64::MAX, u64::MAX, 0]);
        neg_assign(&mut a);
        assert_eq!(a, vec![1, 1, 0]);
        scale_assign(&mut a, from_signed(-3));
        assert_eq!(a.iter().map(|x| to_signed(*x)).collect::<Vec<_>>(), vec![-3, -3, 0]);
        mul_assign(&mut a, &[from_signed(-2), 2, 5]);
        assert_eq!(a.iter().map(|x| to_signed(*x)).collect::<Vec<_>>(), vec![6, -6, 0]);
        assert_eq!(sum(&[u64::MAX, 2]), 1);
    }

    #[test]
    fn floor_division_rounds_down() {
        assert_eq!(to_signed(floor_div(from_signed(-7), 2)), -4);
        assert_eq!(to_signed(floor_div(from_signed(7), 2)), 3);
        assert_eq!(to_signed(floor_div(from_signed(-8), 2)), -4);
    }

    #[test]
    fn bytes_round_trip() {
        let xs = vec![0, 1, u64::MAX, 0x0102_0304_0506_0708];
        assert_eq!(from_le_bytes(&to_le_bytes(&xs)).unwrap(), xs);
        assert!(from_le_bytes(&[1, 2, 3]).is_none());
        let mut out = vec![9u8];
        extend_le_bytes(&mut out, &xs);
        assert_eq!(&out[1..], &to_le_bytes(&xs)[..]);
        let mut acc = vec![1, 1, 1, 1];
        add_le_bytes(&mut acc, &out[1..]);
        assert_eq!(acc, vec![1, 2, 0, 0x0102_0304_0506_0709]);
    }
}
