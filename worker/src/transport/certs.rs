//! Certificates for party identities, built on `rcgen`.
//!
//! This module owns how a party's identity is written into a certificate:
//! every party runs its own CA ([`PartyCa`]) and issues its workers leaf
//! certificates carrying exactly one URI SAN, [`party_uri`]
//! (`spiffe://<federation>/party/<party>`), usable both as TLS client and
//! server. It also owns reading that identity back out of a certificate
//! ([`party_identity`]) and the naming rules for federations and parties.
//!
//! Private keys are held in [`CertifiedKey`], whose `Debug` redacts the key
//! and which zeroizes it on drop.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use zeroize::Zeroize;

use super::error::TransportError;

/// The URI SAN naming a principal of `federation`: for a party name,
/// `spiffe://<federation>/party/<party>`; for a service principal
/// `<role>/<name>` (see [`Role`]), `spiffe://<federation>/<role>/<name>`.
pub fn party_uri(federation: &str, principal: &str) -> String {
    if principal.contains('/') {
        format!("spiffe://{federation}/{principal}")
    } else {
        format!("spiffe://{federation}/party/{principal}")
    }
}

/// Principals of a federation that are not parties. A principal is written
/// as a plain party name (`bank-a`) or as `<role>/<name>` (`dealer/main`,
/// `controller/operator`); party names cannot contain `/`, so the two never
/// collide, and the transport compares principals as strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A trusted dealer serving preprocessing material.
    Dealer,
    /// The client allowed to use a worker's control API (the operator, or
    /// `cohort run`).
    Controller,
}

impl Role {
    /// The URI path segment of the role.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Dealer => "dealer",
            Role::Controller => "controller",
        }
    }

    /// The principal `<role>/<name>`.
    pub fn principal(self, name: &str) -> String {
        format!("{}/{name}", self.as_str())
    }
}

/// Check a principal: a party name, or `dealer/<name>` / `controller/<name>`.
pub fn validate_principal(principal: &str) -> Result<(), String> {
    match principal.split_once('/') {
        None => validate_name("party", principal),
        Some((role, name)) if role == Role::Dealer.as_str() || role == Role::Controller.as_str() => {
            validate_name(role, name)
        }
        Some(_) => Err(format!(
            "invalid principal {:?}: use a party name, dealer/<name> or controller/<name>",
            truncate(principal, 80)
        )),
    }
}

/// A principal in words, for messages: `party bank-a`, `dealer main`.
pub fn describe(principal: &str) -> String {
    match principal.split_once('/') {
        Some((role, name)) => format!("{role} {name}"),
        None => format!("party {principal}"),
    }
}

/// Check a federation or party name: 1 to 63 characters of ASCII letters,
/// digits, `-`, `.` and `_`, starting with a letter or digit.
pub fn validate_name(what: &str, name: &str) -> Result<(), String> {
    let ok_len = (1..=63).contains(&name.len());
    let ok_first = name.as_bytes().first().is_some_and(|c| c.is_ascii_alphanumeric());
    let ok_chars = name.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'));
    if ok_len && ok_first && ok_chars {
        Ok(())
    } else {
        Err(format!(
            "invalid {what} name {:?}: use 1 to 63 ASCII letters, digits, '-', '.' or '_', starting with a letter or digit",
            truncate(name, 80)
        ))
    }
}

pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// The identity a certificate claims.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PartyIdentity {
    /// A principal of the expected federation: a party name, or
    /// `<role>/<name>` for a dealer or controller.
    Party(String),
    /// A single URI SAN that does not name a party of this federation.
    Foreign(String),
}

impl fmt::Display for PartyIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PartyIdentity::Party(p) => f.write_str(p),
            PartyIdentity::Foreign(uri) => write!(f, "{:?}", truncate(uri, 120)),
        }
    }
}

/// Read the party identity from a DER certificate: it must carry exactly one
/// URI SAN. `Err` explains why no identity could be read.
pub fn party_identity(federation: &str, cert_der: &[u8]) -> Result<PartyIdentity, String> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(cert_der).map_err(|_| "the certificate cannot be parsed".to_string())?;
    let san = cert
        .subject_alternative_name()
        .map_err(|_| "the subject alternative name extension is invalid".to_string())?
        .ok_or_else(|| "the certificate has no subject alternative names".to_string())?;
    let uris: Vec<&str> = san
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::URI(u) => Some(*u),
            _ => None,
        })
        .collect();
    let uri = match uris.as_slice() {
        [] => return Err("the certificate has no URI SAN".into()),
        [one] => *one,
        _ => {
            return Err(format!("the certificate has {} URI SANs, expected one", uris.len()));
        }
    };
    let prefix = format!("spiffe://{federation}/");
    let principal = match uri.strip_prefix(&prefix) {
        Some(path) => path.strip_prefix("party/").unwrap_or(path),
        None => return Ok(PartyIdentity::Foreign(uri.to_string())),
    };
    // `party/x/y` must not pass as principal `x/y`: only bare party names
    // follow `party/`.
    let is_party_path = uri[prefix.len()..].starts_with("party/");
    match validate_principal(principal) {
        Ok(()) if is_party_path != principal.contains('/') => Ok(PartyIdentity::Party(principal.to_string())),
        _ => Ok(PartyIdentity::Foreign(uri.to_string())),
    }
}

/// A PEM certificate and its PEM private key. `Debug` redacts the key, and
/// the key is zeroized on drop.
pub struct CertifiedKey {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key (PKCS#8), PEM. Secret.
    pub key_pem: String,
}

impl fmt::Debug for CertifiedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertifiedKey").field("cert_pem", &self.cert_pem).field("key_pem", &"[redacted]").finish()
    }
}

impl Drop for CertifiedKey {
    fn drop(&mut self) {
        self.key_pem.zeroize();
    }
}

/// A party's own certificate authority. Each party runs its own CA; the
/// other parties trust it for that party's workers.
pub struct PartyCa {
    federation: String,
    party: String,
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for PartyCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartyCa")
            .field("federation", &self.federation)
            .field("party", &self.party)
            .field("key", &"[redacted]")
            .finish()
    }
}

/// Back-date certificates slightly to tolerate clock skew between parties.
const CLOCK_SKEW: Duration = Duration::from_secs(300);

impl PartyCa {
    /// Generate a new CA (ECDSA P-256) for `party` of `federation`, valid
    /// from five minutes ago for `lifetime`.
    pub fn generate(federation: &str, party: &str, lifetime: Duration) -> Result<PartyCa, TransportError> {
        validate_name("federation", federation).map_err(TransportError::certificate)?;
        validate_principal(party).map_err(TransportError::certificate)?;
        let now = SystemTime::now();
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, format!("cohort federation {federation}"));
        dn.push(DnType::CommonName, format!("cohort CA of {}", describe(party)));
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        params.serial_number = Some(random_serial()?);
        params.not_before = rcgen::date_time_ymd(1970, 1, 1) + cert_time(now.checked_sub(CLOCK_SKEW).unwrap_or(now))?;
        params.not_after = rcgen::date_time_ymd(1970, 1, 1)
            + cert_time(now.checked_add(lifetime).ok_or_else(|| TransportError::certificate("CA lifetime too long"))?)?;
        let key =
            KeyPair::generate().map_err(|e| TransportError::certificate(format!("CA key generation failed: {e}")))?;
        let cert = params
            .self_signed(&key)
            .map_err(|e| TransportError::certificate(format!("CA self-signing failed: {e}")))?;
        Ok(PartyCa {
            federation: federation.to_string(),
            party: party.to_string(),
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Load an existing CA of `party` from its certificate and private key
    /// (PEM), as stored by the operator or provided by the user; the
    /// certificate text (the first certificate is the CA; any that follow
    /// are kept as its chain) is what [`PartyCa::cert_pem`] returns. The key
    /// must match the certificate, which must be a CA. Leaves it issues name
    /// the CA's subject exactly as written and carry its subject key
    /// identifier as their authority key identifier.
    pub fn from_pem(federation: &str, party: &str, cert_pem: &str, key_pem: &str) -> Result<PartyCa, TransportError> {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        validate_name("federation", federation).map_err(TransportError::certificate)?;
        validate_principal(party).map_err(TransportError::certificate)?;
        let bad = |why: &str| TransportError::certificate(format!("the CA of {}: {why}", describe(party)));
        let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|_| bad("no PEM certificate"))?;
        let key = KeyPair::from_pem(key_pem).map_err(|_| bad("the private key cannot be read"))?;
        let (_, x509) =
            x509_parser::parse_x509_certificate(&der).map_err(|_| bad("the certificate cannot be parsed"))?;
        if !x509.is_ca() {
            return Err(bad("the certificate is not a CA (basicConstraints cA is not set)"));
        }
        if *x509.public_key().subject_public_key.data != *rcgen::PublicKeyData::der_bytes(&key) {
            return Err(bad("the private key does not belong to the certificate"));
        }
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(x509.subject()).map_err(|w| bad(&w))?;
        if let Some(ski) = x509.iter_extensions().find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        }) {
            params.key_identifier_method = rcgen::KeyIdMethod::PreSpecified(ski);
        }
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        Ok(PartyCa {
            federation: federation.to_string(),
            party: party.to_string(),
            cert_pem: format!("{}\n", cert_pem.trim_end()),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA certificate and its private key (PEM), to store (the key is
    /// secret: `CertifiedKey` redacts and zeroizes it).
    pub fn to_pem(&self) -> CertifiedKey {
        CertifiedKey { cert_pem: self.cert_pem.clone(), key_pem: self.issuer.key().serialize_pem() }
    }

    /// The CA certificate, PEM (what other parties put in their trust bundle).
    pub fn cert_pem(&self) -> String {
        self.cert_pem.clone()
    }

    /// The federation this CA belongs to.
    pub fn federation(&self) -> &str {
        &self.federation
    }

    /// The party this CA belongs to.
    pub fn party(&self) -> &str {
        &self.party
    }

    /// Issue a leaf for a worker of `party`: URI SAN
    /// `spiffe://<federation>/party/<party>` plus the given DNS names (or IP
    /// addresses, when a string parses as one); usable as TLS client and
    /// server; valid from `not_before` to `not_after`.
    pub fn issue_party_cert(
        &self,
        party: &str,
        dns_names: &[String],
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<CertifiedKey, TransportError> {
        validate_principal(party).map_err(TransportError::certificate)?;
        if not_after <= not_before {
            return Err(TransportError::certificate("certificate not_after must be later than not_before"));
        }
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, format!("cohort federation {}", self.federation));
        dn.push(DnType::CommonName, party.to_string());
        params.distinguished_name = dn;
        let uri = party_uri(&self.federation, party);
        let mut sans = vec![SanType::URI(
            uri.try_into().map_err(|_| TransportError::certificate("party URI is not a valid IA5 string"))?,
        )];
        for name in dns_names {
            match name.parse::<std::net::IpAddr>() {
                Ok(ip) => sans.push(SanType::IpAddress(ip)),
                Err(_) => sans.push(SanType::DnsName(
                    name.clone()
                        .try_into()
                        .map_err(|_| TransportError::certificate(format!("invalid DNS name {name:?}")))?,
                )),
            }
        }
        params.subject_alt_names = sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial()?);
        params.not_before = rcgen::date_time_ymd(1970, 1, 1) + cert_time(not_before)?;
        params.not_after = rcgen::date_time_ymd(1970, 1, 1) + cert_time(not_after)?;
        let key =
            KeyPair::generate().map_err(|e| TransportError::certificate(format!("key generation failed: {e}")))?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| TransportError::certificate(format!("signing failed: {e}")))?;
        Ok(CertifiedKey { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }
}

/// rcgen's distinguished name of an X.509 name, attribute by attribute with
/// the same string types, so issued leaves name their issuer byte for byte.
fn distinguished_name(name: &x509_parser::x509::X509Name<'_>) -> Result<DistinguishedName, String> {
    use rcgen::DnValue;
    use x509_parser::der_parser::asn1_rs::Tag;
    let mut dn = DistinguishedName::new();
    for rdn in name.iter() {
        let mut attrs = rdn.iter();
        let (Some(attr), None) = (attrs.next(), attrs.next()) else {
            return Err("the subject has an empty or multi-valued RDN".into());
        };
        let oid: Vec<u64> = attr.attr_type().iter().ok_or("the subject has an unreadable attribute type")?.collect();
        let data = attr.attr_value().data;
        let text = || std::str::from_utf8(data).map_err(|_| "the subject has a non-UTF-8 string".to_string());
        let invalid = |_| "the subject has an invalid string".to_string();
        let value = match attr.attr_value().header.tag() {
            Tag::Utf8String => DnValue::Utf8String(text()?.to_string()),
            Tag::PrintableString => DnValue::PrintableString(text()?.try_into().map_err(invalid)?),
            Tag::Ia5String => DnValue::Ia5String(text()?.try_into().map_err(invalid)?),
            Tag::T61String => DnValue::TeletexString(text()?.try_into().map_err(invalid)?),
            _ => return Err("the subject uses a string type other than UTF8, Printable, IA5 or Teletex".into()),
        };
        dn.push(DnType::from_oid(&oid), value);
    }
    Ok(dn)
}

fn random_serial() -> Result<SerialNumber, TransportError> {
    let mut serial = [0u8; 16];
    getrandom::fill(&mut serial).map_err(|e| TransportError::certificate(format!("random source failed: {e}")))?;
    serial[0] &= 0x7f; // positive
    serial[0] |= 0x01; // no leading zero byte
    Ok(SerialNumber::from_slice(&serial))
}

/// Latest time an X.509 certificate here may carry (9999-12-31T23:59:59Z).
const MAX_CERT_SECS: u64 = 253_402_300_799;

/// Seconds since the Unix epoch of a certificate validity bound. (rcgen's
/// time type is then built as `date_time_ymd(1970, 1, 1) + secs`, which avoids
/// depending on the `time` crate directly.)
fn cert_time(t: SystemTime) -> Result<Duration, TransportError> {
    let since = t
        .duration_since(UNIX_EPOCH)
        .map_err(|_| TransportError::certificate("certificate times before 1970 are not supported"))?;
    if since.as_secs() > MAX_CERT_SECS {
        return Err(TransportError::certificate("certificate times after 9999-12-31 are not supported"));
    }
    Ok(Duration::from_secs(since.as_secs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("party", "bank-a").is_ok());
        assert!(validate_name("party", "").is_err());
        assert!(validate_name("party", "a/b").is_err());
        assert!(validate_name("party", "-a").is_err());
        assert!(validate_name("party", &"a".repeat(64)).is_err());
        assert_eq!(party_uri("fed", "bank-a"), "spiffe://fed/party/bank-a");
        assert_eq!(party_uri("fed", "dealer/main"), "spiffe://fed/dealer/main");
        assert!(validate_principal("controller/operator").is_ok());
        assert!(validate_principal("dealer/").is_err());
        assert!(validate_principal("admin/x").is_err());
        assert_eq!(describe("dealer/main"), "dealer main");
        assert_eq!(describe("bank-a"), "party bank-a");
    }

    #[test]
    fn service_principals_round_trip() {
        let ca = PartyCa::generate("fed", "dealer/main", Duration::from_secs(3600)).expect("ca");
        let now = SystemTime::now();
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        for principal in ["dealer/main", "controller/operator"] {
            let leaf = ca.issue_party_cert(principal, &[], now, now + Duration::from_secs(600)).expect("leaf");
            let der = CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).expect("pem");
            assert_eq!(party_identity("fed", &der), Ok(PartyIdentity::Party(principal.into())));
        }
    }

    #[test]
    fn issued_leaf_carries_identity() {
        let ca = PartyCa::generate("fed", "bank-a", Duration::from_secs(3600)).expect("ca");
        let now = SystemTime::now();
        let leaf = ca
            .issue_party_cert("bank-a", &["localhost".into(), "127.0.0.1".into()], now, now + Duration::from_secs(600))
            .expect("leaf");
        let dbg = format!("{leaf:?}");
        assert!(dbg.contains("[redacted]") && !dbg.contains("PRIVATE KEY"));
        assert!(!format!("{ca:?}").contains("PRIVATE KEY"));
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        let der = CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).expect("pem");
        assert_eq!(party_identity("fed", &der), Ok(PartyIdentity::Party("bank-a".into())));
        assert!(matches!(party_identity("other-fed", &der), Ok(PartyIdentity::Foreign(_))));
        assert!(ca.issue_party_cert("bank-a", &[], now, now - Duration::from_secs(1)).is_err());
    }

    #[test]
    fn a_stored_ca_loads_back_and_keeps_issuing_verifiable_leaves() {
        let ca = PartyCa::generate("fed", "bank-a", Duration::from_secs(3600)).expect("ca");
        let stored = ca.to_pem();
        assert!(stored.key_pem.contains("PRIVATE KEY") && !format!("{stored:?}").contains("PRIVATE KEY"));
        let loaded = PartyCa::from_pem("fed", "bank-a", &stored.cert_pem, &stored.key_pem).expect("loads");
        assert_eq!(loaded.cert_pem().trim_end(), ca.cert_pem().trim_end());
        let now = SystemTime::now();
        let leaf = loaded
            .issue_party_cert("bank-a", &["localhost".into()], now, now + Duration::from_secs(600))
            .expect("leaf");
        // The leaf verifies against the original CA certificate, with the
        // issuer named byte for byte and the AKI equal to the CA's SKI.
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        let leaf_der = CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).expect("pem");
        let ca_der = CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).expect("pem");
        let (_, l) = x509_parser::parse_x509_certificate(&leaf_der).expect("leaf");
        let (_, c) = x509_parser::parse_x509_certificate(&ca_der).expect("ca");
        assert_eq!(l.issuer().as_raw(), c.subject().as_raw());
        let ski = c.iter_extensions().find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        });
        let aki = l.iter_extensions().find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(a) => {
                a.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        });
        assert!(ski.is_some() && ski == aki, "{ski:?} {aki:?}");
        crate::transport::TlsIdentity::from_pem("fed", "bank-a", &leaf.cert_pem, &leaf.key_pem, &ca.cert_pem())
            .expect("the TLS stack accepts the leaf");
        // A key of another CA, a leaf instead of a CA, and garbage are refused.
        let other = PartyCa::generate("fed", "bank-a", Duration::from_secs(3600)).expect("ca").to_pem();
        assert!(PartyCa::from_pem("fed", "bank-a", &stored.cert_pem, &other.key_pem).is_err());
        assert!(PartyCa::from_pem("fed", "bank-a", &leaf.cert_pem, &leaf.key_pem).is_err());
        let err = PartyCa::from_pem("fed", "bank-a", "junk", &stored.key_pem).expect_err("junk");
        assert!(!err.to_string().contains("PRIVATE"), "{err}");
    }
}
