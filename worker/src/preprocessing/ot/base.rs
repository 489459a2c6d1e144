//! Base oblivious transfer: the "simplest OT" of Chou and Orlandi
//! (LATINCRYPT 2015), over the Ristretto255 group (curve25519-dalek).
//!
//! One round trip gives `count` random 1-out-of-2 OTs of 128-bit keys:
//!
//! ```text
//! sender:    a ← Z_ℓ,  A = a·G                                  ── A ──▶
//! receiver:  per OT i with choice c_i: b_i ← Z_ℓ,
//!            B_i = b_i·G + c_i·A,  k_i = H(i, A, B_i, b_i·A)   ◀── B_i ──
//! sender:    k_i^0 = H(i, A, B_i, a·B_i),  k_i^1 = H(i, A, B_i, a·(B_i − A))
//! ```
//!
//! so `k_i = k_i^{c_i}`, while `k_i^{1−c_i}` needs `a·b_i·G` from `A` and
//! `b_i·G`: **semi-honest security under the computational Diffie–Hellman
//! assumption in Ristretto255, with `H` (SHA-256) a random oracle.** `B_i`
//! alone is uniform whatever `c_i` is, so the sender learns nothing of the
//! choices. The hash binds the index and the whole transcript, as Hauck and
//! Loss ("Efficient and Universally Composable Protocols for Oblivious
//! Transfer from the CDH Assumption", 2017) and Genç, Iovino and Rial ("The
//! simplest protocol for oblivious transfer revisited", 2020) recommend
//! after pointing out the gaps in the original proof; those gaps concern
//! malicious receivers, which this semi-honest protocol does not claim to
//! stop.
//!
//! Only `count` = κ = 128 base OTs are ever run per pair of parties and
//! direction: [`super::iknp`] extends them.

use super::OtError;
use crate::prg::{EntropyError, SEED_BYTES, Seed};
use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::Identity;
use zeroize::Zeroize;

/// Bytes of one compressed Ristretto255 point on the wire.
pub const POINT_BYTES: usize = 32;

fn random_scalar() -> Result<Scalar, EntropyError> {
    let mut wide = [0u8; 64];
    crate::prg::fill_random(&mut wide)?;
    let s = Scalar::from_bytes_mod_order_wide(&wide);
    wide.zeroize();
    Ok(s)
}

fn decode_point(bytes: &[u8], what: &str) -> Result<RistrettoPoint, OtError> {
    CompressedRistretto::from_slice(bytes)
        .ok()
        .and_then(|c| c.decompress())
        .ok_or_else(|| OtError::Malformed(format!("{what} is not a valid Ristretto255 point")))
}

/// `H(i, A, B_i, P)`, the first 16 bytes of SHA-256 with a domain separator.
fn derive_key(index: usize, a: &[u8; 32], b: &[u8; 32], shared: &RistrettoPoint) -> Seed {
    let mut ctx = ::ring::digest::Context::new(&::ring::digest::SHA256);
    ctx.update(b"cohort/ot/base-ot/chou-orlandi/v1");
    ctx.update(&(index as u64).to_le_bytes());
    ctx.update(a);
    ctx.update(b);
    let mut p = shared.compress().to_bytes();
    ctx.update(&p);
    p.zeroize();
    let digest = ctx.finish();
    let mut key = [0u8; SEED_BYTES];
    key.copy_from_slice(&digest.as_ref()[..SEED_BYTES]);
    Seed::from_bytes(key)
}

/// The sender's state between its message and the receiver's reply.
/// Secret: holds `a`, zeroized on drop.
pub struct BaseOtSender {
    a: Scalar,
    big_a: [u8; 32],
    point_a: RistrettoPoint,
}

impl std::fmt::Debug for BaseOtSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BaseOtSender(<redacted>)")
    }
}

impl Drop for BaseOtSender {
    fn drop(&mut self) {
        self.a.zeroize();
    }
}

impl BaseOtSender {
    /// Step 1: draw `a` and return the state and `A = a·G` to send.
    pub fn start() -> Result<(BaseOtSender, [u8; POINT_BYTES]), EntropyError> {
        let a = random_scalar()?;
        let point_a = RistrettoPoint::mul_base(&a);
        let big_a = point_a.compress().to_bytes();
        Ok((BaseOtSender { a, big_a, point_a }, big_a))
    }

    /// Step 3: from the receiver's `B_0 ‖ … ‖ B_{count−1}`, both keys of
    /// every OT.
    pub fn finish(self, reply: &[u8], count: usize) -> Result<Vec<[Seed; 2]>, OtError> {
        if reply.len() != count * POINT_BYTES {
            return Err(OtError::Malformed(format!(
                "base OT reply of {} bytes, expected {count} points of {POINT_BYTES} bytes",
                reply.len()
            )));
        }
        let mut keys = Vec::with_capacity(count);
        for (i, chunk) in reply.chunks_exact(POINT_BYTES).enumerate() {
            let b = decode_point(chunk, &format!("base OT reply point {i}"))?;
            let b_bytes: [u8; 32] = chunk.try_into().map_err(|_| OtError::Malformed("point length".into()))?;
            let k0 = derive_key(i, &self.big_a, &b_bytes, &(self.a * b));
            let k1 = derive_key(i, &self.big_a, &b_bytes, &(self.a * (b - self.point_a)));
            keys.push([k0, k1]);
        }
        Ok(keys)
    }
}

/// Step 2, the receiver: from the sender's `A` and the choice bits, the
/// chosen keys and the reply `B_0 ‖ … ‖ B_{n−1}` to send.
pub fn receive(choices: &[bool], sender_message: &[u8]) -> Result<(Vec<Seed>, Vec<u8>), OtError> {
    let point_a = decode_point(sender_message, "the base OT sender's point A")?;
    if point_a == RistrettoPoint::identity() {
        // a = 0 would make both keys of every OT equal to the chosen one.
        return Err(OtError::Malformed("the base OT sender's point A is the identity".into()));
    }
    let big_a: [u8; 32] = point_a.compress().to_bytes();
    let mut keys = Vec::with_capacity(choices.len());
    let mut reply = Vec::with_capacity(choices.len() * POINT_BYTES);
    for (i, &c) in choices.iter().enumerate() {
        let mut b = random_scalar()?;
        let mut point_b = RistrettoPoint::mul_base(&b);
        if c {
            point_b += point_a;
        }
        let b_bytes = point_b.compress().to_bytes();
        keys.push(derive_key(i, &big_a, &b_bytes, &(b * point_a)));
        reply.extend_from_slice(&b_bytes);
        b.zeroize();
    }
    Ok((keys, reply))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(choices: &[bool]) -> (Vec<[Seed; 2]>, Vec<Seed>) {
        let (sender, a) = BaseOtSender::start().expect("entropy");
        let (chosen, reply) = receive(choices, &a).expect("receive");
        (sender.finish(&reply, choices.len()).expect("finish"), chosen)
    }

    #[test]
    fn the_receiver_gets_exactly_the_chosen_key() {
        let choices: Vec<bool> = (0..128).map(|i| (i * 7 + i / 3) % 2 == 1).collect();
        let (both, chosen) = run(&choices);
        for (i, c) in choices.iter().enumerate() {
            assert_eq!(chosen[i], both[i][*c as usize], "OT {i}: the chosen key");
            assert_ne!(chosen[i], both[i][!*c as usize], "OT {i}: the other key differs");
        }
        // Every key is distinct (fresh randomness, index-bound hashing).
        let mut all: Vec<[u8; 16]> = both.iter().flatten().map(|k| *k.as_bytes()).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 256);
    }

    #[test]
    fn runs_are_independent() {
        let choices = vec![false; 4];
        let (first, _) = run(&choices);
        let (second, _) = run(&choices);
        assert_ne!(first[0][0], second[0][0]);
    }

    #[test]
    fn malformed_messages_are_refused() {
        let (_, reply) = receive(&[true], &RistrettoPoint::mul_base(&Scalar::ONE).compress().to_bytes()).expect("ok");
        assert!(receive(&[true], &[0xff; 32]).is_err(), "not a point");
        assert!(receive(&[true], &[1; 5]).is_err(), "short");
        assert!(receive(&[true], &RistrettoPoint::identity().compress().to_bytes()).is_err(), "identity");
        let (sender, _) = BaseOtSender::start().expect("entropy");
        assert!(sender.finish(&reply, 2).is_err(), "wrong count");
        let (sender, _) = BaseOtSender::start().expect("entropy");
        let err = sender.finish(&[0xff; 32], 1).expect_err("not a point");
        assert!(err.to_string().contains("base OT reply point 0"), "{err}");
    }
}
