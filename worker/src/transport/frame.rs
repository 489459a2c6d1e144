//! Wire framing of messages between two parties.
//!
//! This module owns the identifiers every frame carries ([`JobId`], [`Step`])
//! and the fixed-size frame header: its encoding, and every check made on a
//! header received from a peer before any byte of the frame body is read.
//!
//! # Wire format (all integers big-endian)
//!
//! ```text
//! offset size field
//!      0    4 magic            b"CHRT"
//!      4    1 wire version     1
//!      5    1 flags            bit 0 = last fragment of the message; other bits 0
//!      6    2 reserved         0
//!      8   16 job id
//!     24    4 step tag         0 handshake, 1 setup, 2 input sharing, 3 layer, 4 output,
//!                              5 abort (protocol version 2 and later)
//!     28    4 step argument    the layer index for `layer`, 0 otherwise
//!     32    4 payload length   bytes of payload that follow this header
//!     36    . payload
//! ```
//!
//! A message larger than the maximum frame size is sent as several frames of
//! the same job and step; every frame but the last has the `last` flag clear
//! and a non-empty payload. The receiver rejects a header whose length
//! exceeds its own maximum frame size before reading the body.
//!
//! Errors never quote raw header bytes: after a framing desync those bytes
//! could be payload (secret shares), so only the name of the failed check is
//! reported.

use std::fmt;

use super::error::TransportErrorKind;

/// Magic bytes opening every frame.
pub const MAGIC: [u8; 4] = *b"CHRT";
/// Version of the frame layout described in the module documentation.
pub const WIRE_VERSION: u8 = 1;
/// Size of the frame header in bytes.
pub const HEADER_LEN: usize = 36;
/// Flag bit: this frame is the last (or only) fragment of its message.
pub const FLAG_LAST: u8 = 0x01;

/// 16-byte job identity carried in every frame. `Display` is lowercase hex.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct JobId(pub [u8; 16]);

impl JobId {
    /// Reserved for peer probes ([`super::mesh::probe`]): a hello naming it
    /// is answered at once and the connection closed. Never a job's id.
    pub const PROBE: JobId = JobId([0; 16]);

    /// A fresh random job id from the operating system's generator.
    pub fn random() -> JobId {
        let mut bytes = [0u8; 16];
        // Failure of the OS random source is not recoverable and is not
        // influenced by any peer.
        getrandom::fill(&mut bytes).expect("operating system random number generator failed");
        JobId(bytes)
    }

    /// The first bytes of the ids of the pools' own generation sessions
    /// (a peer's router starts its side of a fill on the first connection
    /// naming one). Never a job's id.
    pub const FILL_PREFIX: [u8; 4] = [0xf1, 0x11, 0x5e, 0x55];

    /// A fresh random id of a pool's own generation session.
    pub fn random_fill_session() -> JobId {
        let mut id = JobId::random();
        id.0[..4].copy_from_slice(&JobId::FILL_PREFIX);
        id
    }

    /// Whether this id names a pool's own generation session.
    pub fn is_fill_session(&self) -> bool {
        self.0[..4] == JobId::FILL_PREFIX
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Protocol step a frame belongs to; appears in every error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// Connection establishment (TLS and the version hello).
    Handshake,
    /// Job setup (consent checks, parameters).
    Setup,
    /// Secret-sharing of the inputs.
    Input,
    /// One online layer (communication round) of the circuit.
    Layer(u32),
    /// Opening the outputs.
    Output,
    /// One message of OT-based preprocessing (the argument counts the
    /// messages of the generation session).
    Preprocess(u32),
    /// The sender gave up on the job; the payload says why (UTF-8, at most
    /// [`MAX_ABORT_REASON`] bytes). Sent only at protocol version 2 and
    /// later, so that a peer learns the cause instead of a closed socket.
    Abort,
}

/// Longest abort reason accepted from a peer.
pub const MAX_ABORT_REASON: usize = 1024;

impl Step {
    /// The (tag, argument) pair written into the frame header.
    pub fn encode(self) -> (u32, u32) {
        match self {
            Step::Handshake => (0, 0),
            Step::Setup => (1, 0),
            Step::Input => (2, 0),
            Step::Layer(n) => (3, n),
            Step::Output => (4, 0),
            Step::Abort => (5, 0),
            Step::Preprocess(n) => (6, n),
        }
    }

    /// Inverse of [`Step::encode`]; `None` for an unknown tag or a non-zero
    /// argument on a step that takes none.
    pub fn decode(tag: u32, arg: u32) -> Option<Step> {
        match (tag, arg) {
            (0, 0) => Some(Step::Handshake),
            (1, 0) => Some(Step::Setup),
            (2, 0) => Some(Step::Input),
            (3, n) => Some(Step::Layer(n)),
            (4, 0) => Some(Step::Output),
            (5, 0) => Some(Step::Abort),
            (6, n) => Some(Step::Preprocess(n)),
            _ => None,
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Handshake => f.write_str("handshake"),
            Step::Setup => f.write_str("setup"),
            Step::Input => f.write_str("input sharing"),
            Step::Layer(n) => write!(f, "layer {n}"),
            Step::Output => f.write_str("output"),
            Step::Abort => f.write_str("abort"),
            Step::Preprocess(n) => write!(f, "preprocessing message {n}"),
        }
    }
}

/// A decoded, validated frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Job the frame belongs to.
    pub job: JobId,
    /// Step the frame belongs to.
    pub step: Step,
    /// Whether this is the last fragment of its message.
    pub last: bool,
    /// Payload length in bytes.
    pub len: u32,
}

impl FrameHeader {
    /// Encode into the fixed-size wire header.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..4].copy_from_slice(&MAGIC);
        h[4] = WIRE_VERSION;
        h[5] = if self.last { FLAG_LAST } else { 0 };
        // h[6..8] reserved, zero.
        h[8..24].copy_from_slice(&self.job.0);
        let (tag, arg) = self.step.encode();
        h[24..28].copy_from_slice(&tag.to_be_bytes());
        h[28..32].copy_from_slice(&arg.to_be_bytes());
        h[32..36].copy_from_slice(&self.len.to_be_bytes());
        h
    }

    /// Decode and check a header received from a peer.
    ///
    /// Checks, in order: magic, wire version, flags, reserved bytes, step,
    /// job id (must be `expected_job`), payload length (at most `max_frame`),
    /// and that a non-final fragment is not empty. The body is not touched.
    pub fn decode(
        buf: &[u8; HEADER_LEN],
        expected_job: JobId,
        max_frame: usize,
    ) -> Result<FrameHeader, TransportErrorKind> {
        let malformed = |what: &str| TransportErrorKind::Malformed(what.to_string());
        if buf[0..4] != MAGIC {
            return Err(malformed("bad magic (not a Cohort frame)"));
        }
        if buf[4] != WIRE_VERSION {
            return Err(malformed("unsupported frame wire version"));
        }
        let flags = buf[5];
        if flags & !FLAG_LAST != 0 {
            return Err(malformed("unknown flag bits set"));
        }
        if buf[6] != 0 || buf[7] != 0 {
            return Err(malformed("reserved header bytes are not zero"));
        }
        let tag = u32::from_be_bytes([buf[24], buf[25], buf[26], buf[27]]);
        let arg = u32::from_be_bytes([buf[28], buf[29], buf[30], buf[31]]);
        let step = Step::decode(tag, arg).ok_or_else(|| malformed("unknown step"))?;
        let mut job = [0u8; 16];
        job.copy_from_slice(&buf[8..24]);
        if JobId(job) != expected_job {
            return Err(TransportErrorKind::WrongJob);
        }
        let len = u32::from_be_bytes([buf[32], buf[33], buf[34], buf[35]]);
        if len as u64 > max_frame as u64 {
            return Err(TransportErrorKind::FrameTooLarge { size: len as u64, max: max_frame as u64 });
        }
        let last = flags & FLAG_LAST != 0;
        if !last && len == 0 {
            return Err(malformed("empty non-final fragment"));
        }
        Ok(FrameHeader { job: JobId(job), step, last, len })
    }
}

/// Number of frames a message of `len` bytes is split into.
pub fn frame_count(len: usize, max_frame: usize) -> usize {
    if len == 0 { 1 } else { len.div_ceil(max_frame.max(1)) }
}

/// Bytes put on the wire (headers plus payload) for a message of `len` bytes.
pub fn wire_bytes(len: usize, max_frame: usize) -> u64 {
    len as u64 + (HEADER_LEN * frame_count(len, max_frame)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const JOB: JobId = JobId([7u8; 16]);

    fn header(step: Step, last: bool, len: u32) -> [u8; HEADER_LEN] {
        FrameHeader { job: JOB, step, last, len }.encode()
    }

    #[test]
    fn round_trip_every_step() {
        for step in [
            Step::Handshake,
            Step::Setup,
            Step::Input,
            Step::Layer(0),
            Step::Layer(u32::MAX),
            Step::Output,
            Step::Abort,
        ] {
            for last in [true, false] {
                let h = header(step, last, 1234);
                let d = FrameHeader::decode(&h, JOB, 4096).expect("valid header");
                assert_eq!(d, FrameHeader { job: JOB, step, last, len: 1234 });
            }
        }
    }

    #[test]
    fn display_formats() {
        assert_eq!(Step::Input.to_string(), "input sharing");
        assert_eq!(Step::Layer(3).to_string(), "layer 3");
        assert_eq!(Step::Handshake.to_string(), "handshake");
        let mut j = [0u8; 16];
        j[0] = 0xab;
        j[15] = 0x01;
        assert_eq!(JobId(j).to_string(), "ab000000000000000000000000000001");
        assert_ne!(JobId::random(), JobId::random());
    }

    fn malformed(h: &[u8; HEADER_LEN]) -> String {
        match FrameHeader::decode(h, JOB, 4096) {
            Err(TransportErrorKind::Malformed(m)) => m,
            other => panic!("expected Malformed, got {other:?}"),
        }
    }

    #[test]
    fn rejects_bad_magic_version_flags_reserved() {
        let good = header(Step::Setup, true, 10);
        let mut h = good;
        h[0] = b'X';
        assert!(malformed(&h).contains("magic"));
        let mut h = good;
        h[4] = 2;
        assert!(malformed(&h).contains("version"));
        let mut h = good;
        h[5] = 0x80;
        assert!(malformed(&h).contains("flag"));
        let mut h = good;
        h[7] = 1;
        assert!(malformed(&h).contains("reserved"));
    }

    #[test]
    fn rejects_unknown_step_and_bad_argument() {
        let mut h = header(Step::Setup, true, 10);
        h[24..28].copy_from_slice(&9u32.to_be_bytes());
        assert!(malformed(&h).contains("step"));
        let mut h = header(Step::Output, true, 10);
        h[28..32].copy_from_slice(&1u32.to_be_bytes());
        assert!(malformed(&h).contains("step"));
    }

    #[test]
    fn rejects_wrong_job() {
        let h = header(Step::Setup, true, 10);
        assert!(matches!(FrameHeader::decode(&h, JobId([8u8; 16]), 4096), Err(TransportErrorKind::WrongJob)));
    }

    #[test]
    fn rejects_oversized_from_header_alone() {
        let h = header(Step::Layer(1), true, 4097);
        match FrameHeader::decode(&h, JOB, 4096) {
            Err(TransportErrorKind::FrameTooLarge { size, max }) => {
                assert_eq!((size, max), (4097, 4096));
            }
            other => panic!("expected FrameTooLarge, got {other:?}"),
        }
        let h = header(Step::Layer(1), true, u32::MAX);
        assert!(matches!(FrameHeader::decode(&h, JOB, 4096), Err(TransportErrorKind::FrameTooLarge { .. })));
        // Exactly the maximum is fine.
        assert!(FrameHeader::decode(&header(Step::Setup, true, 4096), JOB, 4096).is_ok());
    }

    #[test]
    fn rejects_empty_non_final_fragment() {
        let h = header(Step::Setup, false, 0);
        assert!(malformed(&h).contains("empty"));
        // An empty final frame (an empty message) is fine.
        assert!(FrameHeader::decode(&header(Step::Setup, true, 0), JOB, 4096).is_ok());
    }

    #[test]
    fn garbage_never_panics() {
        // Deterministic pseudo-random headers: decode must return, not panic.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..10_000 {
            let mut h = [0u8; HEADER_LEN];
            for b in h.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            h[0..4].copy_from_slice(&MAGIC);
            h[4] = WIRE_VERSION;
            let _ = FrameHeader::decode(&h, JOB, 4096);
        }
    }

    #[test]
    fn frame_counts() {
        assert_eq!(frame_count(0, 10), 1);
        assert_eq!(frame_count(10, 10), 1);
        assert_eq!(frame_count(11, 10), 2);
        assert_eq!(wire_bytes(25, 10), 25 + 3 * HEADER_LEN as u64);
    }
}
