//! TLS configuration and peer identity verification.
//!
//! This module owns a party's TLS identity ([`TlsIdentity`]: its certificate
//! chain and key, and which CAs it trusts for its peers) and turns it into
//! rustls client and server configurations that
//!
//! - speak TLS 1.3 only, with the `ring` provider passed explicitly (never a
//!   process-wide default provider);
//! - require mutual authentication;
//! - verify the peer's chain against the trusted CAs (and validity period),
//!   then check that the peer's single URI SAN is exactly
//!   `spiffe://<federation>/party/<expected peer>` (DNS names are not used
//!   for peers);
//! - disable session resumption, so every connection re-verifies
//!   certificates.
//!
//! [`SharedIdentity`] lets a running process replace its identity (renewed
//! certificate, new trust bundle): every new handshake takes the current
//! one, and established connections keep the one they were made with.
//!
//! Each connection gets its own verifier instance with a small report slot
//! ([`VerifyReport`]), so a refused handshake can be explained with the
//! party name and reason (untrusted issuer, expired at ..., wrong identity)
//! rather than a bare rustls error.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::sign::SingleCertAndKey;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme,
};

use super::certs::{PartyIdentity, party_identity, validate_name, validate_principal};
use super::error::{TlsFailure, TransportError, cert_failure, rfc3339};

/// One party's TLS identity and trust: its certificate chain and private
/// key, and the CAs it trusts for its peers.
///
/// `Debug` does not print the key.
pub struct TlsIdentity {
    federation: String,
    party: String,
    provider: Arc<CryptoProvider>,
    certified: Arc<rustls::sign::CertifiedKey>,
    not_before: SystemTime,
    not_after: SystemTime,
    trust: Trust,
}

/// Which CAs are trusted for which peer.
enum Trust {
    /// One bundle trusted for every peer (each party's CA in one PEM).
    Bundle(TrustAnchors),
    /// Each peer's certificate must chain to that peer's own CA.
    Pinned(HashMap<String, TrustAnchors>),
}

#[derive(Clone)]
struct TrustAnchors {
    roots: Arc<RootCertStore>,
    client_verifier: Arc<dyn ClientCertVerifier>,
}

impl fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let trust = match &self.trust {
            Trust::Bundle(t) => format!("bundle of {} CA(s)", t.roots.len()),
            Trust::Pinned(m) => {
                let mut names: Vec<&String> = m.keys().collect();
                names.sort();
                format!("pinned per party: {names:?}")
            }
        };
        f.debug_struct("TlsIdentity")
            .field("federation", &self.federation)
            .field("party", &self.party)
            .field("trust", &trust)
            .field("key", &"[redacted]")
            .finish()
    }
}

impl TlsIdentity {
    /// Load a party's identity from PEM: its certificate chain (leaf first),
    /// its private key, and one bundle of CA certificates trusted for every
    /// peer (normally every party's CA).
    ///
    /// With one shared bundle, a CA in the bundle can vouch for any party
    /// name; [`TlsIdentity::from_pem_pinned`] binds each peer to its own CA.
    pub fn from_pem(
        federation: &str,
        party: &str,
        cert_chain_pem: &str,
        key_pem: &str,
        trust_bundle_pem: &str,
    ) -> Result<TlsIdentity, TransportError> {
        let (provider, certified, (not_before, not_after)) = load_own(federation, party, cert_chain_pem, key_pem)?;
        let anchors = trust_anchors(&provider, trust_bundle_pem, "the trust bundle")?;
        Ok(TlsIdentity {
            federation: federation.to_string(),
            party: party.to_string(),
            provider,
            certified,
            not_before,
            not_after,
            trust: Trust::Bundle(anchors),
        })
    }

    /// Like [`TlsIdentity::from_pem`], but each peer is trusted only through
    /// its own CA: `peer_cas` lists `(party name, CA bundle PEM)`. A peer not
    /// listed cannot connect.
    pub fn from_pem_pinned(
        federation: &str,
        party: &str,
        cert_chain_pem: &str,
        key_pem: &str,
        peer_cas: &[(String, String)],
    ) -> Result<TlsIdentity, TransportError> {
        let (provider, certified, (not_before, not_after)) = load_own(federation, party, cert_chain_pem, key_pem)?;
        let mut map = HashMap::new();
        for (peer, pem) in peer_cas {
            validate_principal(peer).map_err(TransportError::certificate)?;
            let anchors = trust_anchors(&provider, pem, &format!("the CA bundle of party {peer}"))?;
            if map.insert(peer.clone(), anchors).is_some() {
                return Err(TransportError::certificate(format!("party {peer} is listed twice among the peer CAs")));
            }
        }
        Ok(TlsIdentity {
            federation: federation.to_string(),
            party: party.to_string(),
            provider,
            certified,
            not_before,
            not_after,
            trust: Trust::Pinned(map),
        })
    }

    /// The federation this identity belongs to.
    pub fn federation(&self) -> &str {
        &self.federation
    }

    /// The party this identity belongs to.
    pub fn party(&self) -> &str {
        &self.party
    }

    /// End of validity of this party's own certificate (for expiry metrics).
    pub fn cert_not_after(&self) -> SystemTime {
        self.not_after
    }

    /// Why this party's own certificate is not valid at `now` (not yet
    /// valid, or expired), or `None` when it is. Every peer refuses a
    /// certificate outside its validity period, so a process must not
    /// switch to one (see [`super::reload`]).
    pub fn validity_problem(&self, now: SystemTime) -> Option<String> {
        let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if now < self.not_before {
            Some(format!(
                "the certificate is not valid before {} (now {})",
                rfc3339(secs(self.not_before)),
                rfc3339(secs(now))
            ))
        } else if now > self.not_after {
            Some(format!("the certificate expired at {} (now {})", rfc3339(secs(self.not_after)), rfc3339(secs(now))))
        } else {
            None
        }
    }

    /// Seconds until this party's own certificate expires (negative once
    /// it has expired): the expiry gauges of the worker and the dealer.
    pub fn cert_expires_in(&self) -> f64 {
        match self.not_after.duration_since(SystemTime::now()) {
            Ok(d) => d.as_secs_f64(),
            Err(e) => -e.duration().as_secs_f64(),
        }
    }

    fn anchors_for(&self, peer: &str) -> Option<&TrustAnchors> {
        match &self.trust {
            Trust::Bundle(t) => Some(t),
            Trust::Pinned(m) => m.get(peer),
        }
    }

    /// Client configuration for dialing `expected_peer`.
    pub(crate) fn client_config(
        &self,
        expected_peer: &str,
        report: ReportSlot,
    ) -> Result<Arc<ClientConfig>, TransportError> {
        let anchors = self
            .anchors_for(expected_peer)
            .ok_or_else(|| TransportError::certificate(format!("no CA is trusted for party {expected_peer}")))?;
        let verifier = PeerServerVerifier {
            federation: self.federation.clone(),
            expected: expected_peer.to_string(),
            roots: anchors.roots.clone(),
            algs: self.provider.signature_verification_algorithms,
            report,
        };
        let mut cfg = ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TransportError::certificate(format!("TLS client setup: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_cert_resolver(Arc::new(SingleCertAndKey::from(self.certified.clone())));
        cfg.resumption = rustls::client::Resumption::disabled();
        cfg.enable_sni = false;
        Ok(Arc::new(cfg))
    }

    /// Server configuration accepting any of the `inbound` peers.
    pub(crate) fn server_config(
        &self,
        inbound: &[String],
        report: ReportSlot,
    ) -> Result<Arc<ServerConfig>, TransportError> {
        let trust = match &self.trust {
            Trust::Bundle(t) => ClientTrust::Bundle(t.client_verifier.clone()),
            Trust::Pinned(m) => ClientTrust::Pinned(
                inbound.iter().filter_map(|p| m.get(p).map(|t| (p.clone(), t.client_verifier.clone()))).collect(),
            ),
        };
        let verifier = PeerClientVerifier {
            federation: self.federation.clone(),
            inbound: inbound.to_vec(),
            trust,
            algs: self.provider.signature_verification_algorithms,
            report,
        };
        let mut cfg = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TransportError::certificate(format!("TLS server setup: {e}")))?
            .with_client_cert_verifier(Arc::new(verifier))
            .with_cert_resolver(Arc::new(SingleCertAndKey::from(self.certified.clone())));
        cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        cfg.send_tls13_tickets = 0;
        Ok(Arc::new(cfg))
    }
}

/// The contents of a process's TLS files, read at one time: its chain and
/// key, and the CAs it trusts. [`super::reload::TlsWatcher`] compares
/// digests of these to notice renewed files.
pub struct TlsMaterial {
    cert: String,
    key: zeroize::Zeroizing<String>,
    trust: MaterialTrust,
}

enum MaterialTrust {
    /// One bundle for every peer.
    Bundle(String),
    /// `(principal, CA bundle PEM)` per peer.
    Pinned(Vec<(String, String)>),
}

impl TlsMaterial {
    /// Material trusting each peer only through its own CA bundle.
    pub fn pinned(cert: String, key: String, trusted: Vec<(String, String)>) -> TlsMaterial {
        TlsMaterial { cert, key: zeroize::Zeroizing::new(key), trust: MaterialTrust::Pinned(trusted) }
    }

    /// Material trusting one bundle for every peer.
    pub fn bundle(cert: String, key: String, bundle: String) -> TlsMaterial {
        TlsMaterial { cert, key: zeroize::Zeroizing::new(key), trust: MaterialTrust::Bundle(bundle) }
    }

    /// A digest of everything read, to notice a change without keeping a
    /// second copy of the key.
    pub fn digest(&self) -> [u8; 32] {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let mut field = |bytes: &[u8]| {
            ctx.update(&(bytes.len() as u64).to_be_bytes());
            ctx.update(bytes);
        };
        field(self.cert.as_bytes());
        field(self.key.as_bytes());
        match &self.trust {
            MaterialTrust::Bundle(pem) => field(pem.as_bytes()),
            MaterialTrust::Pinned(trusted) => {
                for (principal, pem) in trusted {
                    field(principal.as_bytes());
                    field(pem.as_bytes());
                }
            }
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }

    /// The identity of `principal` in `federation` these files make.
    pub fn identity(&self, federation: &str, principal: &str) -> Result<TlsIdentity, TransportError> {
        match &self.trust {
            MaterialTrust::Bundle(pem) => TlsIdentity::from_pem(federation, principal, &self.cert, &self.key, pem),
            MaterialTrust::Pinned(trusted) => {
                TlsIdentity::from_pem_pinned(federation, principal, &self.cert, &self.key, trusted)
            }
        }
    }
}

/// A [`TlsIdentity`] that can be replaced while the process runs.
///
/// Handshakes read it once (see [`SharedIdentity::current`]), so a
/// replacement affects new connections only: TLS never re-verifies an
/// established connection, and a job's mesh keeps running on the material it
/// was built with. Cloning shares the slot.
#[derive(Clone)]
pub struct SharedIdentity(Arc<RwLock<Arc<TlsIdentity>>>);

impl SharedIdentity {
    pub fn new(identity: TlsIdentity) -> SharedIdentity {
        SharedIdentity(Arc::new(RwLock::new(Arc::new(identity))))
    }

    /// The identity new handshakes use now.
    pub fn current(&self) -> Arc<TlsIdentity> {
        // A poisoned lock only means a writer panicked between two whole
        // values; the stored value is still a complete identity.
        match self.0.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Use `identity` for every handshake from now on. It must belong to the
    /// same federation and party: a process never changes who it is.
    pub fn replace(&self, identity: TlsIdentity) -> Result<(), TransportError> {
        let current = self.current();
        if identity.federation != current.federation || identity.party != current.party {
            return Err(TransportError::certificate(format!(
                "the new identity is {} of federation {}, but this process is {} of federation {}",
                identity.party, identity.federation, current.party, current.federation
            )));
        }
        let mut slot = match self.0.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        *slot = Arc::new(identity);
        Ok(())
    }
}

impl From<TlsIdentity> for SharedIdentity {
    fn from(identity: TlsIdentity) -> SharedIdentity {
        SharedIdentity::new(identity)
    }
}

impl From<Arc<TlsIdentity>> for SharedIdentity {
    fn from(identity: Arc<TlsIdentity>) -> SharedIdentity {
        SharedIdentity(Arc::new(RwLock::new(identity)))
    }
}

impl fmt::Debug for SharedIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.current(), f)
    }
}

type OwnParts = (Arc<CryptoProvider>, Arc<rustls::sign::CertifiedKey>, (SystemTime, SystemTime));

fn load_own(federation: &str, party: &str, cert_chain_pem: &str, key_pem: &str) -> Result<OwnParts, TransportError> {
    validate_name("federation", federation).map_err(TransportError::certificate)?;
    validate_principal(party).map_err(TransportError::certificate)?;
    let chain = CertificateDer::pem_slice_iter(cert_chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TransportError::certificate(format!("cannot parse our certificate chain PEM: {e}")))?;
    let Some(leaf) = chain.first() else {
        return Err(TransportError::certificate("our certificate chain PEM contains no certificate"));
    };
    match party_identity(federation, leaf) {
        Ok(PartyIdentity::Party(p)) if p == party => {}
        Ok(other) => {
            return Err(TransportError::certificate(format!(
                "our certificate names {other}, but this party is {party}"
            )));
        }
        Err(reason) => {
            return Err(TransportError::certificate(format!("our certificate carries no party identity: {reason}")));
        }
    }
    let validity = leaf_validity(leaf)?;
    // The PEM parser's error could quote key lines: report no detail.
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|_| TransportError::certificate("cannot parse our private key PEM (PKCS#8, SEC1 or PKCS#1)"))?;
    let provider = Arc::new(rustls::crypto::CryptoProvider {
        // TLS 1.3 suites, AES-128-GCM first: as strong as the AES-128 PRG, and the fastest here (docs/benchmarks.md).
        cipher_suites: vec![
            rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256,
            rustls::crypto::ring::cipher_suite::TLS13_AES_256_GCM_SHA384,
            rustls::crypto::ring::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        ],
        ..rustls::crypto::ring::default_provider()
    });
    let certified = rustls::sign::CertifiedKey::from_der(chain, key, &provider).map_err(|e| {
        TransportError::certificate(format!("our private key is unusable or does not match our certificate: {e}"))
    })?;
    Ok((provider, Arc::new(certified), validity))
}

/// `(notBefore, notAfter)` of our own leaf.
fn leaf_validity(leaf: &CertificateDer<'_>) -> Result<(SystemTime, SystemTime), TransportError> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|_| TransportError::certificate("cannot parse our certificate"))?;
    let at = |ts: i64| UNIX_EPOCH + Duration::from_secs(u64::try_from(ts).unwrap_or(0));
    Ok((at(cert.validity().not_before.timestamp()), at(cert.validity().not_after.timestamp())))
}

fn trust_anchors(provider: &Arc<CryptoProvider>, pem: &str, what: &str) -> Result<TrustAnchors, TransportError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let cert = cert.map_err(|e| TransportError::certificate(format!("cannot parse {what} PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| TransportError::certificate(format!("{what} holds an unusable CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(TransportError::certificate(format!("{what} contains no CA certificate")));
    }
    let roots = Arc::new(roots);
    let client_verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .map_err(|e| TransportError::certificate(format!("{what}: {e}")))?;
    Ok(TrustAnchors { roots, client_verifier })
}

/// What a verifier saw during one handshake.
#[derive(Debug, Default)]
pub(crate) struct VerifyReport {
    /// The party the peer's certificate names (set even when refused).
    pub(crate) claimed: Option<String>,
    /// Why the certificate was refused.
    pub(crate) failure: Option<TlsFailure>,
}

pub(crate) type ReportSlot = Arc<Mutex<VerifyReport>>;

fn record(report: &ReportSlot, f: impl FnOnce(&mut VerifyReport)) {
    // A poisoned lock only means another thread panicked mid-update; the
    // report is advisory, so keep going with whatever is there.
    let mut guard = match report.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    };
    f(&mut guard);
}

/// A bad signature while building the chain means a CA with the trusted
/// CA's name, but not its key, issued the certificate: an untrusted issuer
/// (and the peer gets the `unknown CA` alert rather than `decrypt error`).
fn chain_error(e: rustls::Error) -> rustls::Error {
    match e {
        rustls::Error::InvalidCertificate(CertificateError::BadSignature) => CertificateError::UnknownIssuer.into(),
        other => other,
    }
}

/// Verifies the server a party dialed: chain to the trusted CAs, then the
/// URI SAN must name exactly the expected peer.
struct PeerServerVerifier {
    federation: String,
    expected: String,
    roots: Arc<RootCertStore>,
    algs: WebPkiSupportedAlgorithms,
    report: ReportSlot,
}

impl fmt::Debug for PeerServerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerServerVerifier").field("expected", &self.expected).finish_non_exhaustive()
    }
}

impl ServerCertVerifier for PeerServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let identity = party_identity(&self.federation, end_entity);
        if let Ok(PartyIdentity::Party(p)) = &identity {
            let p = p.clone();
            record(&self.report, |r| r.claimed = Some(p));
        }
        let chain = ParsedCertificate::try_from(end_entity).and_then(|parsed| {
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &parsed,
                &self.roots,
                intermediates,
                now,
                self.algs.all,
            )
        });
        if let Err(e) = chain.map_err(chain_error) {
            // A certificate naming someone else is reported as such: with
            // pinned trust its chain fails too, but "wrong identity" is what
            // an operator can act on (e.g. a misrouted endpoint).
            let failure = match &identity {
                Ok(PartyIdentity::Party(p)) if *p != self.expected => {
                    TlsFailure::WrongIdentity { expected: self.expected.clone(), got: p.clone() }
                }
                _ => cert_failure(&self.expected, &e),
            };
            record(&self.report, |r| r.failure = Some(failure));
            return Err(e);
        }
        let failure = match identity {
            Ok(PartyIdentity::Party(p)) if p == self.expected => {
                return Ok(ServerCertVerified::assertion());
            }
            Ok(other) => TlsFailure::WrongIdentity { expected: self.expected.clone(), got: other.to_string() },
            Err(reason) => TlsFailure::MissingIdentity { party: self.expected.clone(), reason },
        };
        record(&self.report, |r| r.failure = Some(failure));
        Err(CertificateError::NotValidForName.into())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

enum ClientTrust {
    Bundle(Arc<dyn ClientCertVerifier>),
    Pinned(HashMap<String, Arc<dyn ClientCertVerifier>>),
}

/// Verifies a dialing peer: its URI SAN must name one of the peers expected
/// to dial us, and its chain must lead to a CA trusted for that peer.
struct PeerClientVerifier {
    federation: String,
    inbound: Vec<String>,
    trust: ClientTrust,
    algs: WebPkiSupportedAlgorithms,
    report: ReportSlot,
}

impl fmt::Debug for PeerClientVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerClientVerifier").field("inbound", &self.inbound).finish_non_exhaustive()
    }
}

impl PeerClientVerifier {
    fn expected_label(&self) -> String {
        if self.inbound.is_empty() {
            "(none: no peer is expected to connect)".to_string()
        } else {
            self.inbound.join(" or ")
        }
    }

    fn refuse(&self, failure: TlsFailure) -> rustls::Error {
        record(&self.report, |r| r.failure = Some(failure));
        CertificateError::NotValidForName.into()
    }
}

impl ClientCertVerifier for PeerClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let claimed = match party_identity(&self.federation, end_entity) {
            Ok(PartyIdentity::Party(p)) => p,
            Ok(foreign @ PartyIdentity::Foreign(_)) => {
                return Err(self
                    .refuse(TlsFailure::WrongIdentity { expected: self.expected_label(), got: foreign.to_string() }));
            }
            Err(reason) => {
                return Err(self.refuse(TlsFailure::MissingIdentity { party: self.expected_label(), reason }));
            }
        };
        {
            let c = claimed.clone();
            record(&self.report, |r| r.claimed = Some(c));
        }
        let chain_verifier = match &self.trust {
            ClientTrust::Bundle(v) => Some(v),
            ClientTrust::Pinned(m) => m.get(&claimed),
        };
        let Some(chain_verifier) = chain_verifier else {
            return Err(self.refuse(TlsFailure::WrongIdentity { expected: self.expected_label(), got: claimed }));
        };
        if let Err(e) = chain_verifier.verify_client_cert(end_entity, intermediates, now).map_err(chain_error) {
            let failure = cert_failure(&claimed, &e);
            record(&self.report, |r| r.failure = Some(failure));
            return Err(e);
        }
        if !self.inbound.contains(&claimed) {
            return Err(self.refuse(TlsFailure::WrongIdentity { expected: self.expected_label(), got: claimed }));
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}
