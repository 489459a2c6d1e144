//! The version hello exchanged right after the TLS handshake.
//!
//! This module owns the two messages that open every connection, before
//! any frame: the dialer's [`Hello`] and the acceptor's [`Reply`].
//!
//! ```text
//! Hello (dialer -> acceptor), integers big-endian
//!   magic          4  b"CHHI"
//!   hello version  1  1
//!   job id        16
//!   name length    1  + party name (UTF-8, 1..=255 bytes)
//!   proto length   1  + protocol name (UTF-8, 1..=255 bytes)
//!   min version    4
//!   max version    4
//!
//! Reply (acceptor -> dialer)
//!   magic          4  b"CHRE"
//!   hello version  1  1
//!   status         1  0 ok, 1 wrong job, 2 protocol mismatch,
//!                     3 version mismatch, 4 refused (see reason)
//!   version        4  the agreed version (0 unless ok)
//!   min version    4  the acceptor's range
//!   max version    4
//!   proto length   1  + the acceptor's protocol name
//!   reason length  2  + reason (UTF-8, at most 1024 bytes; empty when ok)
//! ```
//!
//! Every length is bounded, so a hostile peer cannot make a party allocate
//! more than a few hundred bytes here.
//!
//! An *order query* is a probe hello (job [`JobId::PROBE`]) whose protocol
//! field reads `cohort-order/<job id hex>/<order digest hex>`: it asks the
//! peer's router whether its job lists the parties in the same order (the
//! order decides who dials whom, so two parties that disagree would both
//! wait for the other). The router answers `ok` with reason
//! [`ORDER_AGREES`], `refused` with the disagreement, or `wrong job` when
//! the job is not registered there; a router that predates order queries
//! answers it as a plain probe (`ok`, no reason), which tells nothing.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::certs::truncate;
use super::error::TransportErrorKind;
use super::frame::JobId;

const HELLO_MAGIC: [u8; 4] = *b"CHHI";
const REPLY_MAGIC: [u8; 4] = *b"CHRE";
const HELLO_VERSION: u8 = 1;
const MAX_REASON: usize = 1024;

/// Prefix of an order query's protocol field.
const ORDER_QUERY: &str = "cohort-order/";
/// The reason of an order query's `ok` reply.
pub(crate) const ORDER_AGREES: &str = "same party order";

/// The protocol field of an order query about `job`.
pub(crate) fn order_query(job: JobId, digest: &[u8; 32]) -> String {
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{ORDER_QUERY}{job}/{hex}")
}

/// The job and order digest of an order query's protocol field.
pub(crate) fn parse_order_query(protocol: &str) -> Option<(JobId, [u8; 32])> {
    let (job, digest) = protocol.strip_prefix(ORDER_QUERY)?.split_once('/')?;
    fn hex<const N: usize>(s: &str) -> Option<[u8; N]> {
        if s.len() != 2 * N || !s.is_ascii() {
            return None;
        }
        let mut out = [0u8; N];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(out)
    }
    Some((JobId(hex(job)?), hex(digest)?))
}

/// The digest of a job's ordered party list.
pub(crate) fn order_digest(names: &[String]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for name in names {
        ctx.update(&(name.len() as u64).to_be_bytes());
        ctx.update(name.as_bytes());
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Reply status codes.
pub(crate) mod status {
    pub(crate) const OK: u8 = 0;
    pub(crate) const WRONG_JOB: u8 = 1;
    pub(crate) const PROTOCOL_MISMATCH: u8 = 2;
    pub(crate) const VERSION_MISMATCH: u8 = 3;
    pub(crate) const REFUSED: u8 = 4;
}

/// The dialer's hello.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Hello {
    pub(crate) job: JobId,
    pub(crate) party: String,
    pub(crate) protocol: String,
    pub(crate) min_version: u32,
    pub(crate) max_version: u32,
}

/// The acceptor's reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Reply {
    pub(crate) status: u8,
    pub(crate) version: u32,
    pub(crate) min_version: u32,
    pub(crate) max_version: u32,
    pub(crate) protocol: String,
    pub(crate) reason: String,
}

fn put_str8(out: &mut Vec<u8>, s: &str) {
    let s = s.as_bytes();
    let n = s.len().min(255);
    out.push(n as u8);
    out.extend_from_slice(&s[..n]);
}

impl Hello {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&HELLO_MAGIC);
        out.push(HELLO_VERSION);
        out.extend_from_slice(&self.job.0);
        put_str8(&mut out, &self.party);
        put_str8(&mut out, &self.protocol);
        out.extend_from_slice(&self.min_version.to_be_bytes());
        out.extend_from_slice(&self.max_version.to_be_bytes());
        out
    }
}

impl Reply {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.reason.len());
        out.extend_from_slice(&REPLY_MAGIC);
        out.push(HELLO_VERSION);
        out.push(self.status);
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&self.min_version.to_be_bytes());
        out.extend_from_slice(&self.max_version.to_be_bytes());
        put_str8(&mut out, &self.protocol);
        let reason = truncate(&self.reason, MAX_REASON - 3);
        out.extend_from_slice(&(reason.len() as u16).to_be_bytes());
        out.extend_from_slice(reason.as_bytes());
        out
    }
}

fn malformed(what: &str) -> TransportErrorKind {
    TransportErrorKind::Malformed(format!("version hello: {what}"))
}

async fn read_exact<R: AsyncRead + Unpin>(r: &mut R, buf: &mut [u8]) -> Result<(), TransportErrorKind> {
    r.read_exact(buf).await.map(|_| ()).map_err(TransportErrorKind::from_io)
}

async fn read_u32<R: AsyncRead + Unpin>(r: &mut R) -> Result<u32, TransportErrorKind> {
    let mut b = [0u8; 4];
    read_exact(r, &mut b).await?;
    Ok(u32::from_be_bytes(b))
}

async fn read_str<R: AsyncRead + Unpin>(r: &mut R, len: usize, what: &str) -> Result<String, TransportErrorKind> {
    let mut b = vec![0u8; len];
    read_exact(r, &mut b).await?;
    // Replace control characters so the text is safe to show in errors.
    let s = String::from_utf8(b).map_err(|_| malformed(&format!("{what} is not UTF-8")))?;
    Ok(s.chars().map(|c| if c.is_control() { '?' } else { c }).collect())
}

async fn read_str8<R: AsyncRead + Unpin>(r: &mut R, what: &str) -> Result<String, TransportErrorKind> {
    let mut n = [0u8; 1];
    read_exact(r, &mut n).await?;
    if n[0] == 0 {
        return Err(malformed(&format!("empty {what}")));
    }
    read_str(r, n[0] as usize, what).await
}

async fn read_preamble<R: AsyncRead + Unpin>(r: &mut R, magic: [u8; 4]) -> Result<(), TransportErrorKind> {
    let mut m = [0u8; 5];
    read_exact(r, &mut m).await?;
    if m[0..4] != magic {
        return Err(malformed("bad magic (not a Cohort peer?)"));
    }
    if m[4] != HELLO_VERSION {
        return Err(malformed("unsupported hello version"));
    }
    Ok(())
}

pub(crate) async fn read_hello<R: AsyncRead + Unpin>(r: &mut R) -> Result<Hello, TransportErrorKind> {
    read_preamble(r, HELLO_MAGIC).await?;
    let mut job = [0u8; 16];
    read_exact(r, &mut job).await?;
    let party = read_str8(r, "party name").await?;
    let protocol = read_str8(r, "protocol name").await?;
    let min_version = read_u32(r).await?;
    let max_version = read_u32(r).await?;
    if min_version > max_version {
        return Err(malformed("empty version range"));
    }
    Ok(Hello { job: JobId(job), party, protocol, min_version, max_version })
}

pub(crate) async fn read_reply<R: AsyncRead + Unpin>(r: &mut R) -> Result<Reply, TransportErrorKind> {
    read_preamble(r, REPLY_MAGIC).await?;
    let mut st = [0u8; 1];
    read_exact(r, &mut st).await?;
    let version = read_u32(r).await?;
    let min_version = read_u32(r).await?;
    let max_version = read_u32(r).await?;
    let protocol = read_str8(r, "protocol name").await?;
    let mut n = [0u8; 2];
    read_exact(r, &mut n).await?;
    let n = u16::from_be_bytes(n) as usize;
    if n > MAX_REASON {
        return Err(malformed("reason too long"));
    }
    let reason = read_str(r, n, "reason").await?;
    Ok(Reply { status: st[0], version, min_version, max_version, protocol, reason })
}

pub(crate) async fn write_all<W: AsyncWrite + Unpin>(w: &mut W, bytes: &[u8]) -> Result<(), TransportErrorKind> {
    w.write_all(bytes).await.map_err(TransportErrorKind::from_io)?;
    w.flush().await.map_err(TransportErrorKind::from_io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hello_round_trip() {
        let h = Hello {
            job: JobId([3; 16]),
            party: "bank-b".into(),
            protocol: "additive-semi-honest".into(),
            min_version: 1,
            max_version: 3,
        };
        let bytes = h.encode();
        let got = read_hello(&mut bytes.as_slice()).await.expect("hello");
        assert_eq!(got, h);
    }

    #[tokio::test]
    async fn reply_round_trip() {
        let r = Reply {
            status: status::VERSION_MISMATCH,
            version: 0,
            min_version: 4,
            max_version: 9,
            protocol: "p".into(),
            reason: "no common version".into(),
        };
        let got = read_reply(&mut r.encode().as_slice()).await.expect("reply");
        assert_eq!(got, r);
    }

    #[test]
    fn order_queries_round_trip_and_fit_the_protocol_field() {
        let job = JobId([0xab; 16]);
        let digest = order_digest(&["a".into(), "b".into()]);
        let q = order_query(job, &digest);
        assert!(q.len() <= 255);
        assert_eq!(parse_order_query(&q), Some((job, digest)));
        assert_ne!(digest, order_digest(&["b".into(), "a".into()]));
        assert_eq!(parse_order_query("additive-semi-honest"), None);
        assert_eq!(parse_order_query("cohort-order/zz/00"), None);
    }

    #[tokio::test]
    async fn rejects_garbage_and_truncation() {
        let mut bad =
            Hello { job: JobId([3; 16]), party: "a".into(), protocol: "p".into(), min_version: 1, max_version: 1 }
                .encode();
        bad[0] = b'X';
        assert!(matches!(read_hello(&mut bad.as_slice()).await, Err(TransportErrorKind::Malformed(_))));
        let good =
            Hello { job: JobId([3; 16]), party: "a".into(), protocol: "p".into(), min_version: 1, max_version: 1 }
                .encode();
        for cut in 0..good.len() {
            assert!(matches!(read_hello(&mut &good[..cut]).await, Err(TransportErrorKind::Disconnected)));
        }
        let inverted =
            Hello { job: JobId([3; 16]), party: "a".into(), protocol: "p".into(), min_version: 5, max_version: 1 }
                .encode();
        assert!(read_hello(&mut inverted.as_slice()).await.is_err());
    }
}
