//! Errors of the transport.
//!
//! This module owns [`TransportError`] (which peer, which step, what went
//! wrong), its [`TransportErrorKind`], and [`TlsFailure`], the readable
//! description of a refused TLS handshake (untrusted issuer, expired
//! certificate, wrong party identity, or the peer refusing ours).
//!
//! No error carries secret material: no key bytes, no payload bytes, and no
//! raw frame bytes (see [`super::frame`]).

use std::fmt;
use std::time::Duration;

use super::certs::describe;
use super::frame::Step;

/// A transport failure: the peer it concerns (when known), the protocol step
/// it happened in, and what happened.
///
/// `Display` reads like `party bank-b, step layer 3: peer closed the connection`.
#[derive(Debug, Clone, thiserror::Error)]
pub struct TransportError {
    /// Name of the peer party concerned (the claimed or expected one for a
    /// connection that failed before it was identified); `None` for local
    /// problems such as an invalid configuration.
    pub peer: Option<String>,
    /// Step the failure happened in ([`Step::Handshake`] while establishing).
    pub step: Step,
    /// What went wrong.
    pub kind: TransportErrorKind,
}

impl TransportError {
    /// An error concerning `peer` at `step`.
    pub fn new(peer: Option<&str>, step: Step, kind: TransportErrorKind) -> TransportError {
        TransportError { peer: peer.map(str::to_string), step, kind }
    }

    /// A local error (no peer) at `step`.
    pub(crate) fn local(step: Step, kind: TransportErrorKind) -> TransportError {
        TransportError { peer: None, step, kind }
    }

    /// A certificate/PEM problem on this party's side.
    pub(crate) fn certificate(msg: impl Into<String>) -> TransportError {
        TransportError::local(Step::Handshake, TransportErrorKind::Certificate(msg.into()))
    }

    /// A configuration problem on this party's side.
    pub(crate) fn config(step: Step, msg: impl Into<String>) -> TransportError {
        TransportError::local(step, TransportErrorKind::Config(msg.into()))
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.peer {
            Some(p) => write!(f, "{}, step {}: {}", describe(p), self.step, self.kind),
            None => write!(f, "step {}: {}", self.step, self.kind),
        }
    }
}

/// What went wrong; see [`TransportError`] for the peer and step.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportErrorKind {
    /// A socket error other than the peer going away.
    #[error("i/o error: {0}")]
    Io(std::io::Error),
    /// The TLS handshake was refused (by us or by the peer).
    #[error("TLS: {0}")]
    Tls(TlsFailure),
    /// Nothing arrived (or could be sent) in time.
    #[error("timed out after {after:?} waiting for {waiting_for}")]
    Timeout {
        /// The timeout that expired.
        after: Duration,
        /// What we were waiting for.
        waiting_for: &'static str,
    },
    /// The peer closed or reset the connection.
    #[error("peer closed the connection")]
    Disconnected,
    /// The peer gave up on the job and said why (its own error, which
    /// names the party it blames; protocol version 2 and later).
    #[error("the peer aborted the job: {0}")]
    Aborted(String),
    /// A peer gave up on the job blaming another party (possibly this
    /// one), which is the error's peer: its reason names that party.
    #[error("{} gave up on the job: {reason}", describe(.by))]
    AbortedBy {
        /// The party that sent the abort.
        by: String,
        /// Its own error, as it reported it.
        reason: String,
    },
    /// A wait timed out, but this party's timer fired long after its
    /// deadline: the process was stopped or starved, so the delay is not
    /// known to be the peer's (the error names no peer).
    #[error(
        "timed out after {after:?} waiting for {waiting_for} from {}, but this party's own timer fired {late:?} after \
         the deadline (the process was stopped or starved of CPU): the delay is not known to be the peer's",
        describe(.from)
    )]
    Stalled {
        /// The timeout that expired.
        after: Duration,
        /// How late the timer fired.
        late: Duration,
        /// What we were waiting for.
        waiting_for: &'static str,
        /// The peer we were waiting on.
        from: String,
    },
    /// A frame header announced more than the maximum frame size.
    #[error("frame of {size} bytes exceeds the maximum frame size of {max} bytes")]
    FrameTooLarge {
        /// Announced payload length.
        size: u64,
        /// Configured maximum.
        max: u64,
    },
    /// A message (all fragments together) exceeds the maximum message size.
    #[error("message of {size} bytes exceeds the maximum message size of {max} bytes")]
    MessageTooLarge {
        /// Message size (for a received message: the size reached so far).
        size: u64,
        /// Configured maximum.
        max: u64,
    },
    /// A frame or hello that does not follow the wire format.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// A message for another step than the one expected.
    #[error("protocol error: expected a message for step {expected}, received one for step {got}")]
    UnexpectedStep {
        /// Step the receiver asked for.
        expected: Step,
        /// Step the frame carried.
        got: Step,
    },
    /// A frame or hello for a different job.
    #[error("wrong job: the peer sent data for a different job")]
    WrongJob,
    /// The version ranges of the two parties do not overlap.
    #[error(
        "no common protocol version: we support {our_min}..={our_max}, the peer supports {their_min}..={their_max}"
    )]
    VersionMismatch {
        /// Our lowest supported version.
        our_min: u32,
        /// Our highest supported version.
        our_max: u32,
        /// The peer's lowest supported version.
        their_min: u32,
        /// The peer's highest supported version.
        their_max: u32,
    },
    /// The two parties run different protocols.
    #[error("protocol mismatch: we run {ours:?}, the peer runs {theirs:?}")]
    ProtocolMismatch {
        /// Our protocol name.
        ours: String,
        /// The peer's protocol name.
        theirs: String,
    },
    /// The version hello was refused for another reason (e.g. its party name
    /// differs from the certificate identity, or a duplicate connection).
    #[error("handshake refused: {0}")]
    Handshake(String),
    /// A certificate or key of our own could not be generated or loaded.
    #[error("certificate: {0}")]
    Certificate(String),
    /// The configuration given to the transport is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl Clone for TransportErrorKind {
    fn clone(&self) -> Self {
        use TransportErrorKind::*;
        match self {
            Io(e) => Io(std::io::Error::new(e.kind(), e.to_string())),
            Tls(t) => Tls(t.clone()),
            Timeout { after, waiting_for } => Timeout { after: *after, waiting_for },
            Disconnected => Disconnected,
            Aborted(reason) => Aborted(reason.clone()),
            AbortedBy { by, reason } => AbortedBy { by: by.clone(), reason: reason.clone() },
            Stalled { after, late, waiting_for, from } => {
                Stalled { after: *after, late: *late, waiting_for, from: from.clone() }
            }
            FrameTooLarge { size, max } => FrameTooLarge { size: *size, max: *max },
            MessageTooLarge { size, max } => MessageTooLarge { size: *size, max: *max },
            Malformed(m) => Malformed(m.clone()),
            UnexpectedStep { expected, got } => UnexpectedStep { expected: *expected, got: *got },
            WrongJob => WrongJob,
            VersionMismatch { our_min, our_max, their_min, their_max } => {
                VersionMismatch { our_min: *our_min, our_max: *our_max, their_min: *their_min, their_max: *their_max }
            }
            ProtocolMismatch { ours, theirs } => ProtocolMismatch { ours: ours.clone(), theirs: theirs.clone() },
            Handshake(m) => Handshake(m.clone()),
            Certificate(m) => Certificate(m.clone()),
            Config(m) => Config(m.clone()),
        }
    }
}

impl TransportErrorKind {
    /// Classify a socket error: the peer going away is [`Disconnected`],
    /// a TLS alert or TLS protocol error is [`Tls`], anything else is [`Io`].
    ///
    /// [`Disconnected`]: TransportErrorKind::Disconnected
    /// [`Tls`]: TransportErrorKind::Tls
    /// [`Io`]: TransportErrorKind::Io
    pub(crate) fn from_io(e: std::io::Error) -> TransportErrorKind {
        use std::io::ErrorKind as K;
        if let Some(tls) = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
            return TransportErrorKind::Tls(TlsFailure::from_rustls(tls));
        }
        match e.kind() {
            K::UnexpectedEof | K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => {
                TransportErrorKind::Disconnected
            }
            _ => TransportErrorKind::Io(e),
        }
    }
}

/// Why a TLS handshake was refused, in words an operator can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TlsFailure {
    /// The certificate does not chain to a CA we trust for that party.
    #[error("certificate of {} is not signed by a trusted CA (untrusted issuer)", describe(.party))]
    UntrustedIssuer {
        /// Party whose certificate it is (claimed or expected).
        party: String,
    },
    /// The certificate's validity period has ended.
    #[error("certificate of {} expired at {not_after} (checked at {checked_at})", describe(.party))]
    Expired {
        /// Party whose certificate it is.
        party: String,
        /// End of validity, RFC 3339 UTC.
        not_after: String,
        /// Time of the check, RFC 3339 UTC.
        checked_at: String,
    },
    /// The certificate's validity period has not started.
    #[error("certificate of {} is not valid before {not_before} (checked at {checked_at})", describe(.party))]
    NotYetValid {
        /// Party whose certificate it is.
        party: String,
        /// Start of validity, RFC 3339 UTC.
        not_before: String,
        /// Time of the check, RFC 3339 UTC.
        checked_at: String,
    },
    /// A valid certificate, but for another identity than the expected peer.
    #[error("wrong identity: expected {}, the certificate names {got}", describe(.expected))]
    WrongIdentity {
        /// The party (or parties, `a or b`) we expected.
        expected: String,
        /// The party name (or the URI, when outside this federation) the
        /// certificate carries.
        got: String,
    },
    /// The certificate carries no (or more than one) party identity.
    #[error("certificate presented as {} carries no usable identity: {reason}", describe(.party))]
    MissingIdentity {
        /// The party we expected.
        party: String,
        /// What is wrong with the URI SANs.
        reason: String,
    },
    /// Another defect of the certificate (bad signature, bad encoding, ...).
    #[error("certificate of {} is invalid: {reason}", describe(.party))]
    InvalidCertificate {
        /// Party whose certificate it is.
        party: String,
        /// The verifier's reason.
        reason: String,
    },
    /// The peer aborted the handshake with an alert, usually because it did
    /// not accept our certificate.
    #[error("the peer refused the TLS handshake: {reason}")]
    PeerRefused {
        /// The alert, in words.
        reason: String,
    },
    /// Any other TLS failure.
    #[error("{0}")]
    Other(String),
}

impl TlsFailure {
    /// Describe a rustls error for which no verifier report exists.
    pub(crate) fn from_rustls(e: &rustls::Error) -> TlsFailure {
        match e {
            rustls::Error::AlertReceived(alert) => TlsFailure::PeerRefused { reason: alert_reason(*alert) },
            rustls::Error::InvalidCertificate(_) => cert_failure("(unidentified)", e),
            rustls::Error::NoCertificatesPresented => TlsFailure::Other("the peer presented no certificate".into()),
            rustls::Error::PeerIncompatible(p) => {
                TlsFailure::Other(format!("the peer is incompatible (this mesh requires TLS 1.3): {p:?}"))
            }
            other => TlsFailure::Other(other.to_string()),
        }
    }
}

/// Describe a certificate verification error about `party`'s certificate.
pub(crate) fn cert_failure(party: &str, e: &rustls::Error) -> TlsFailure {
    use rustls::CertificateError as C;
    let party = party.to_string();
    let rustls::Error::InvalidCertificate(ce) = e else {
        return TlsFailure::InvalidCertificate { party, reason: e.to_string() };
    };
    match ce {
        C::UnknownIssuer => TlsFailure::UntrustedIssuer { party },
        C::ExpiredContext { time, not_after } => {
            TlsFailure::Expired { party, not_after: rfc3339(not_after.as_secs()), checked_at: rfc3339(time.as_secs()) }
        }
        C::Expired => TlsFailure::Expired { party, not_after: "(unknown)".into(), checked_at: rfc3339(now_secs()) },
        C::NotValidYetContext { time, not_before } => TlsFailure::NotYetValid {
            party,
            not_before: rfc3339(not_before.as_secs()),
            checked_at: rfc3339(time.as_secs()),
        },
        C::NotValidYet => {
            TlsFailure::NotYetValid { party, not_before: "(unknown)".into(), checked_at: rfc3339(now_secs()) }
        }
        C::BadSignature => TlsFailure::InvalidCertificate { party, reason: "bad signature".into() },
        other => TlsFailure::InvalidCertificate { party, reason: other.to_string() },
    }
}

/// A TLS alert received from the peer, in words.
fn alert_reason(alert: rustls::AlertDescription) -> String {
    use rustls::AlertDescription as A;
    match alert {
        A::UnknownCA => "it does not trust the issuer of our certificate (alert: unknown CA)".into(),
        A::CertificateExpired => {
            "it considers our certificate expired or not yet valid (alert: certificate expired)".into()
        }
        A::BadCertificate => {
            "it rejected our certificate, e.g. for naming the wrong party (alert: bad certificate)".into()
        }
        A::CertificateUnknown => "it rejected our certificate (alert: certificate unknown)".into(),
        A::CertificateRequired => "it requires a client certificate".into(),
        A::AccessDenied => "access denied (alert: access denied)".into(),
        A::ProtocolVersion => "no common TLS version (this mesh requires TLS 1.3)".into(),
        A::HandshakeFailure => "no common TLS parameters (alert: handshake failure)".into(),
        A::DecryptError => "a signature check failed (alert: decrypt error)".into(),
        other => format!("alert {other:?}"),
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Seconds since the Unix epoch as an RFC 3339 UTC timestamp.
pub(crate) fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, (rem % 3600) / 60, rem % 60)
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day)
/// (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_peer_and_step() {
        let e = TransportError::new(Some("bank-b"), Step::Layer(3), TransportErrorKind::Disconnected);
        assert_eq!(e.to_string(), "party bank-b, step layer 3: peer closed the connection");
        let e = TransportError::config(Step::Setup, "no such peer 7");
        assert_eq!(e.to_string(), "step setup: invalid configuration: no such peer 7");
    }

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn io_classification_and_clone() {
        let k = TransportErrorKind::from_io(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
        assert!(matches!(k, TransportErrorKind::Disconnected));
        let k = TransportErrorKind::from_io(std::io::Error::other("boom"));
        let c = k.clone();
        assert_eq!(k.to_string(), c.to_string());
        let k = TransportErrorKind::from_io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::UnknownCA),
        ));
        assert!(k.to_string().contains("unknown CA"), "{k}");
    }
}
